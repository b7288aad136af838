"""Method discovery: baselines/ modules, built-ins and the entry-point group."""

from __future__ import annotations

import sys
from pathlib import Path

import mlrsnet.baselines as baselines
import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness.registry import discover, get_method

SCHEDULES = {"fixed", "multistep", "multistep-val", "exponential", "cosine", "sgdr"}

DROPPED = '''
from mlrsnet.harness.contract import Method


class Halving(Method):
    name = "halving-{tag}"
    defaults = {{"lr": 0.2}}

    def lr(self, step):
        return self.hparams["lr"] * 0.5 ** step.epoch
'''


def test_the_hand_designed_schedules_are_registered() -> None:
    assert SCHEDULES <= set(discover())


def test_a_module_dropped_into_baselines_appears_with_no_other_edit(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "halving_drop.py").write_text(DROPPED.format(tag="drop"))
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "baselines.halving_drop", raising=False)
    assert "halving-drop" in discover()
    assert get_method("halving-drop")().hparams == {"lr": 0.2}


def test_third_party_methods_register_through_the_entry_point_group(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "thirdparty_lr.py").write_text(DROPPED.format(tag="ep"))
    dist = tmp_path / "thirdparty_lr-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-lr\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mlrsnet.methods]\nhalving = thirdparty_lr:Halving\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "halving-ep" in discover()


def test_an_unknown_method_lists_the_available_ones() -> None:
    with pytest.raises(UserError, match="available: .*cosine"):
        get_method("cosin")


def test_unknown_hyper_parameters_are_rejected_by_name() -> None:
    with pytest.raises(UserError, match="no hyper-parameter 'lrr'"):
        get_method("fixed")(lrr=0.1)
