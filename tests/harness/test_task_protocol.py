"""The harness runs any :class:`~mlrsnet.harness.contract.TaskSetting`, not only the paper's.

A task registered by another package (``tests/support/toy_task.py``), whose profiles are
plain dataclasses with ``epochs`` alone, trains through the loop and the executor into the
store; a profile under a name of its own that declares ``scale = "paper"`` gives methods the
paper's cadences (the scale is a field, never a profile's name).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.toy_task import register_toy_task

from mlrsnet.harness import registry
from mlrsnet.harness.executor import run_local
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.loop import train
from mlrsnet.harness.store import Store


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    register_toy_task(tmp_path / "site", monkeypatch)
    yield
    registry.tasks.cache_clear()


@pytest.mark.parametrize("method", ["fixed", "multistep", "mlrsnet", "rtho"])
def test_a_profile_with_epochs_alone_trains_through_the_executor(toy, method: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "results")
    outcomes = run_local([Cell("toy-blobs", "quick", method, experiment="toy")], store, quiet=True)
    assert list(outcomes.values()) == ["finished"]
    runs = store.runs("toy")
    assert list(runs["status"]) == ["finished"]


def test_the_scale_a_profile_declares_decides_the_cadences_not_its_name(toy) -> None:
    reduced = train(Cell("toy-blobs", "quick", "rtho")).method_info
    paper = train(Cell("toy-blobs", "gpu-full", "rtho")).method_info
    assert (reduced["rtho_update_every"], paper["rtho_update_every"]) == (1, 100)
    reduced = train(Cell("toy-blobs", "quick", "mlrsnet")).method_info
    paper = train(Cell("toy-blobs", "gpu-full", "mlrsnet")).method_info
    assert paper["t_val"] == 300 and reduced["t_val"] == 1
