"""A method's resumable state is complete by construction (:mod:`mlrsnet.harness.method_state`).

The default ``state_dict`` saves every plain attribute a method sets, in a form
``torch.load(weights_only=True)`` reads back; a resumed method whose restored state differs
from the checkpointed one is stopped before anything is stored, naming the attribute.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

from mlrsnet.harness.contract import Method, StepInfo
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.loop import train
from mlrsnet.harness.method_state import IncompleteStateError, StateError, fingerprint
from mlrsnet.harness.schedules import Schedule


class Pair(NamedTuple):
    a: torch.Tensor
    b: float


class Keeper(Method):
    name = "keeper"

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.count, self.best, self.label = 3, 0.25, "x"
        self.buffer = torch.arange(4.0)
        self.history = [1, 2.5, None, {"k": torch.ones(2)}]
        self.pair = Pair(torch.zeros(2), 1.5)
        self.net = torch.nn.Linear(2, 1)
        self.rng = torch.Generator().manual_seed(7)


def roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_default_state_dict_saves_every_attribute_and_loads_with_weights_only() -> None:
    saved = Keeper()
    saved.count, saved.best = 7, 0.125
    saved.buffer.add_(1)
    saved.history.append(9)
    saved.pair = Pair(torch.ones(2), 2.5)
    with torch.no_grad():
        saved.net.weight.fill_(0.5)
    saved.rng.manual_seed(11)
    state = roundtrip(saved.state_dict())
    assert set(state) == {"count", "best", "label", "buffer", "history", "pair", "net", "rng"}
    fresh = Keeper()
    fresh.load_state_dict(state)
    assert (fresh.count, fresh.best, fresh.history[:3], fresh.history[4]) == (7, 0.125, [1, 2.5, None], 9)
    assert torch.equal(fresh.buffer, torch.arange(4.0) + 1)
    assert isinstance(fresh.pair, Pair) and fresh.pair.b == 2.5
    assert torch.equal(fresh.net.weight, torch.full((1, 2), 0.5))
    assert torch.equal(fresh.rng.get_state(), saved.rng.get_state())
    assert fingerprint(fresh) == fingerprint(saved)


def test_an_attribute_the_default_cannot_save_is_refused_with_the_fixes() -> None:
    method = Keeper()
    method.handle = open(__file__)  # noqa: SIM115 - an object with no saved form
    try:
        with pytest.raises(StateError, match=r"Keeper\.handle holds a TextIOWrapper.*transient"):
            method.state_dict()
    finally:
        method.handle.close()


def test_transient_attributes_are_not_state() -> None:
    class Timed(Keeper):
        transient = ("seconds",)

    method = Timed()
    method.seconds = 1.23
    assert "seconds" not in method.state_dict()
    assert "seconds" not in fingerprint(method)


# -- through the loop: the plateau schedule ------------------------------------------
class Plateau(Schedule):
    """Halves the LR after every epoch whose held-out loss is not a new best, and after every
    second epoch regardless (so a resume has a decision to remember)."""

    name = "plateau-halving"
    uses_held_out = True

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.halvings, self.best = 0, float("inf")

    def factor(self, step: StepInfo) -> float:
        return 0.5 ** self.halvings

    def end_epoch(self, epoch: int, metrics) -> None:
        if metrics["val/loss"] >= self.best or epoch % 2 == 1:
            self.halvings += 1
        self.best = min(self.best, metrics["val/loss"])


class ForgetsPlateau(Plateau):
    """The plug-in of the issue: writes a state_dict and forgets its counter."""

    name = "plateau-forgetful"

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state) -> None:
        pass


def interrupted(cls: type[Method], tmp_path: Path, after: int) -> Any:
    cell = Cell("lstm2-ptb", "smoke", cls.name, overrides={"epochs": 6, "train_tokens": 88})
    checkpoint = tmp_path / f"{cls.name}.pt"

    class Stop(Exception):
        pass

    def stop(epoch: int, metrics: Any) -> None:
        if epoch == after:
            raise Stop

    with pytest.raises(Stop):
        train(cell, method_class=cls, checkpoint_path=checkpoint, on_epoch=stop)
    return lambda: train(cell, method_class=cls, checkpoint_path=checkpoint)


def test_a_plateau_schedule_interrupted_after_epoch_3_of_6_resumes_to_the_same_lrs(tmp_path, data_dir) -> None:
    whole = train(Cell("lstm2-ptb", "smoke", "plateau-halving", overrides={"epochs": 6, "train_tokens": 88}),
                  method_class=Plateau)
    resumed = interrupted(Plateau, tmp_path, after=3)()
    assert resumed.steps["lr"] == whole.steps["lr"]
    assert min(whole.steps["lr"]) < 20.0 / 4  # it halved at least three times


def test_a_plugin_whose_state_dict_forgets_its_counter_is_stopped_on_resume(tmp_path, data_dir) -> None:
    resume = interrupted(ForgetsPlateau, tmp_path, after=3)
    with pytest.raises(IncompleteStateError, match="'halvings'"):
        resume()
