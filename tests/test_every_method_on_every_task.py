"""Every registered method runs on every task's smoke profile through the one loop.

A few steps each (one short epoch): enough to show the method binds to the task (image or
language model, any architecture), produces a finite LR trace, and the run finishes.
Method-specific behaviour is specified in each method's own tests.
"""

from __future__ import annotations

import math

import pytest

from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.loop import train
from mlrsnet.harness.registry import discover
from mlrsnet.paper.data.locate import MissingDataError
from mlrsnet.paper.tasks import TASKS

METHODS = sorted(discover())
#: Two steps per run: images 64 examples at batch 32, text 2 BPTT windows of 10 x 4 tokens.
SHORT = {"image": {"epochs": 1, "train_size": 64}, "text": {"epochs": 1, "train_tokens": 88}}


@pytest.fixture(autouse=True)
def _official_checkpoints(monkeypatch: pytest.MonkeyPatch, official_ckpts) -> None:
    monkeypatch.setenv("MLRSNET_CHECKPOINTS", str(official_ckpts))


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("method", METHODS)
def test_the_method_runs_a_few_steps_on_the_tasks_smoke_profile(method: str, task: str, data_dir) -> None:
    cell = Cell(task, "smoke", method, overrides=SHORT[TASKS[task].kind])
    try:
        result = train(cell)
    except MissingDataError as missing:  # SVHN: no public subset exists (see SOURCES.md)
        pytest.skip(f"no {TASKS[task].dataset} data here: {missing}")
    assert result.status == "finished", result.diverged_step
    lrs = result.steps["lr"]
    assert len(lrs) >= 2 and all(math.isfinite(lr) for lr in lrs)
    assert {r["split"] for r in result.epochs} >= {"train", "test"}
