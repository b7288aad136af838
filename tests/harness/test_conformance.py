"""The conformance suite, run over every registered method, plug-ins included.

Every method found in ``baselines/`` and the ``mlrsnet.methods`` entry points passes the
same checks (:mod:`mlrsnet.harness.conformance`) on an image and a text smoke task: it runs,
its LRs are finite and positive, an interrupted and resumed run equals the uninterrupted
one, and its ``reads_loss`` / ``uses_held_out`` declarations match what it does.  The checks
themselves are shown to catch what they are for, on small plug-ins that break one rule each.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlrsnet.harness.conformance import SETTINGS, check_method, check_setting
from mlrsnet.harness.contract import Method, StepInfo
from mlrsnet.harness.registry import discover
from mlrsnet.harness.schedules import Schedule

METHODS = sorted(discover())


@pytest.fixture(autouse=True)
def _official_checkpoints(monkeypatch: pytest.MonkeyPatch, official_ckpts) -> None:
    monkeypatch.setenv("MLRSNET_CHECKPOINTS", str(official_ckpts))


def failures(checks: list) -> list[str]:
    return [c.line() for c in checks if c.passed is False]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.task)
@pytest.mark.parametrize("name", METHODS)
def test_every_registered_method_conforms(name: str, setting, data_dir, tmp_path) -> None:
    checks = check_setting(discover()[name], setting, tmp_path)
    assert {c.name for c in checks} == {"runs", "lr", "resume", "reads_loss", "uses_held_out"}
    assert not failures(checks), "\n".join(failures(checks))


# -- the checks catch what they are for ----------------------------------------------------
IMAGE = SETTINGS[0]


class ForgetfulPlateau(Schedule):
    """Halves the LR when the held-out loss stops improving, but writes a state_dict that
    forgets its counter (the failure the issue reported)."""

    name = "forgetful-plateau"
    uses_held_out = True

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.halvings, self.best = 0, float("inf")

    def factor(self, step: StepInfo) -> float:
        return 0.5 ** self.halvings

    def end_epoch(self, epoch: int, metrics) -> None:
        loss = metrics["val/loss"]
        self.halvings += 0 if loss < self.best else 1
        self.best = min(self.best, loss)
        self.halvings += 1  # halve every epoch, so the resume has something to get wrong

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state) -> None:
        self.best = state["best"]


class PlateauWithDefaultState(ForgetfulPlateau):
    """The same schedule relying on the default state_dict: complete by construction."""

    name = "plateau-default-state"
    state_dict = Method.state_dict
    load_state_dict = Method.load_state_dict


class LossReadingSchedule(Schedule):
    """Declares reads_loss = False (a Schedule) but scales its LR by the loss."""

    name = "loss-reading-schedule"

    def factor(self, step: StepInfo) -> float:
        return float(step.loss.detach()) / 2.3


class UndeclaredPlateau(Schedule):
    """Reads the held-out loss without declaring uses_held_out."""

    name = "undeclared-plateau"

    def end_epoch(self, epoch: int, metrics) -> None:
        metrics["val/loss"]

    def factor(self, step: StepInfo) -> float:
        return 1.0


class NeedlessHoldout(Schedule):
    """Declares uses_held_out but never reads held-out data."""

    name = "needless-holdout"
    uses_held_out = True

    def factor(self, step: StepInfo) -> float:
        return 1.0


def only(checks: list, name: str):
    (check,) = [c for c in checks if c.name == name]
    return check


def test_a_state_dict_that_forgets_an_attribute_fails_the_resume_check(data_dir, tmp_path) -> None:
    check = only(check_setting(ForgetfulPlateau, IMAGE, tmp_path), "resume")
    assert check.passed is False and "'halvings'" in check.detail and "state_dict" in check.detail


def test_the_default_state_dict_saves_plain_attributes(data_dir, tmp_path) -> None:
    checks = check_setting(PlateauWithDefaultState, IMAGE, tmp_path)
    assert not failures(checks), failures(checks)
    assert only(checks, "lr").detail != "8 LRs in [0.1, 0.1]"  # it halved: the resume had state to keep


def test_a_schedule_that_reads_the_loss_fails_its_reads_loss_declaration(data_dir, tmp_path) -> None:
    check = only(check_setting(LossReadingSchedule, IMAGE, tmp_path), "reads_loss")
    assert check.passed is False and "declare reads_loss = True" in check.detail


def test_reading_val_metrics_without_declaring_uses_held_out_says_so(data_dir, tmp_path) -> None:
    check = only(check_setting(UndeclaredPlateau, IMAGE, tmp_path), "runs")
    assert check.passed is False and "uses_held_out = True" in check.detail


def test_declaring_uses_held_out_without_reading_it_fails(data_dir, tmp_path) -> None:
    check = only(check_setting(NeedlessHoldout, IMAGE, tmp_path), "uses_held_out")
    assert check.passed is False and "for nothing" in check.detail


def test_check_method_reports_each_check_as_it_comes(data_dir) -> None:
    seen: list[str] = []
    checks = check_method(PlateauWithDefaultState, on_check=lambda c: seen.append(c.name))
    assert seen == [c.name for c in checks] and len(checks) == 5 * len(SETTINGS)
