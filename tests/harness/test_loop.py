"""The training loop: determinism, divergence handling, exact resume after a crash."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlrsnet.baselines as baselines
import pandas as pd
import pytest

from mlrsnet.harness.executor import run_cell, run_local
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.loop import train
from mlrsnet.harness.store import Store

EXPLODING = '''
from mlrsnet.harness.contract import Method


class Exploding(Method):
    name = "exploding"
    defaults = {}

    def lr(self, step):
        return 0.1 if step.step < 3 else 1e30
'''


def _tables(store: Store, exp: str) -> dict[str, pd.DataFrame]:
    out = {}
    for t in ("epochs", "steps"):
        df = store.read(t, exp).drop(columns="run_id")
        out[t] = df.sort_values(list(df.columns[:3])).reset_index(drop=True)
    return out


def test_same_task_method_and_seed_give_identical_metrics(data_dir) -> None:
    cell = Cell("resnet18-cifar10", "smoke", "cosine", {"lr": 0.05}, seed=3)
    a, b = train(cell), train(cell)
    assert a.epochs == b.epochs
    assert a.steps == b.steps
    assert train(cell.with_(seed=4)).steps["loss"] != a.steps["loss"]


def test_language_model_runs_carry_hidden_state_and_clip(data_dir) -> None:
    a = train(Cell("lstm2-ptb", "smoke", "fixed", {"lr": 20.0}))
    assert a.status == "finished" and a.final("test", "ppl") < 10_000


def test_a_non_finite_loss_ends_the_run_as_diverged_and_the_experiment_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir) -> None:
    (tmp_path / "exploding_lr.py").write_text(EXPLODING)
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "mlrsnet.baselines.exploding_lr", raising=False)
    store = Store(tmp_path / "results")
    cells = [Cell("resnet18-cifar10", "smoke", "exploding", experiment="e"),
             Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.05}, experiment="e")]
    outcomes = run_local(cells, store, quiet=True)
    assert list(outcomes.values()) == ["diverged", "finished"]
    runs = store.runs("e").set_index("method")
    step = runs.loc["exploding", "diverged_step"]
    assert step >= 3
    # the row says where and why, in words a reader of the runs table sees
    steps = store.read("steps", "e")
    epoch = int(steps.loc[steps["step"] == step, "epoch"].iloc[0])
    assert runs.loc["exploding", "error"] == (f"diverged at step {int(step)} (epoch {epoch}): "
                                              "training loss nan (not finite)")
    assert pd.isna(runs.loc["fixed", "error"])


def test_finished_runs_are_skipped_and_force_reruns_them(tmp_path: Path, data_dir) -> None:
    store = Store(tmp_path)
    cell = Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.05}, experiment="e")
    assert run_cell(cell, store) is not None
    assert run_cell(cell, store) is None
    assert run_cell(cell, store, force=True) is not None


@pytest.mark.parametrize(("task", "method", "hparams", "overrides"), [
    ("lstm2-ptb", "multistep-val", {"lr": 20.0}, {}),
    # meta-learners hold a position in the held-out source across the epoch boundary: a
    # shuffled pass of augmented images (80 held out = 3 batches a pass, 4 draws an epoch),
    # validation windows with a carried state
    ("resnet18-cifar10", "mlrsnet", {"t_val": 1}, {"holdout": 80}),
    ("lstm2-ptb", "mlrsnet", {"t_val": 1}, {}),
])
def test_an_interrupted_run_resumes_to_the_same_tables_as_an_uninterrupted_one(
        tmp_path: Path, data_dir, task: str, method: str, hparams: dict, overrides: dict) -> None:
    cell = Cell(task, "smoke", method, hparams, experiment="e", overrides=overrides)
    clean = Store(tmp_path / "clean")
    run_cell(cell, clean)

    crashed = Store(tmp_path / "crashed")

    def crash_after_first_epoch(epoch: int, metrics: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cell(cell, crashed, on_epoch=crash_after_first_epoch)
    assert crashed.status("e", cell.run_id) == "running"
    assert (tmp_path / "crashed" / "e" / "checkpoints" / f"{cell.run_id}.pt").exists()
    run_cell(cell, crashed)
    assert crashed.status("e", cell.run_id) == "finished"
    a, b = _tables(clean, "e"), _tables(crashed, "e")
    pd.testing.assert_frame_equal(a["epochs"], b["epochs"])
    pd.testing.assert_frame_equal(a["steps"], b["steps"])


def test_compile_and_channels_last_are_off_by_default_and_recorded_when_asked(
        data_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlrsnet.harness.loop import train

    cell = Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.05}, overrides={"epochs": 1})
    plain = train(cell)
    info = plain.method_info
    assert (info["compile"], info["channels_last"], info["precision"]) == (None, False, "fp32")
    monkeypatch.setenv("MLRSNET_COMPILE", "eager")  # the cheapest backend: the plumbing, not speed
    monkeypatch.setenv("MLRSNET_CHANNELS_LAST", "1")
    fast = train(cell)
    # channels-last applies on the CPU too (the hang it was refused for did not come back
    # with torch 2.14.1: benchmarks/perf/README.md)
    assert (fast.method_info["compile"], fast.method_info["channels_last"]) == ("eager", True)
    assert fast.method_info["compiled_graphs"] >= 1
    assert fast.status == "finished"
    # the same training; channels-last convolutions add in another order (float32 round-off)
    assert fast.steps["loss"] == pytest.approx(plain.steps["loss"], rel=1e-2)


def test_the_cli_options_set_the_environment_the_loop_reads(tmp_path: Path, data_dir,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mlrsnet.harness.cli import main

    # main() sets the variables for the process; setenv here makes the fixture restore them
    # (unset) afterwards, so no later test compiles its model
    monkeypatch.setenv("MLRSNET_COMPILE", "")
    monkeypatch.setenv("MLRSNET_CHANNELS_LAST", "")
    code = main(["train", "--task", "resnet18-cifar10", "--method", "fixed", "--profile", "smoke",
                 "--override", "epochs=1", "--results", str(tmp_path), "--quiet",
                 "--compile", "eager", "--channels-last"])
    assert code == 0
    row = Store(tmp_path).runs("adhoc").iloc[0]
    info = row["method_info"]
    assert (info["compile"], info["channels_last"]) == ("eager", True)
    # and part of the run's execution identity
    assert (row["data"]["execution"]["compile"], row["data"]["execution"]["channels_last"]) == ("eager", True)
    monkeypatch.undo()
    assert "MLRSNET_COMPILE" not in os.environ and "MLRSNET_CHANNELS_LAST" not in os.environ


def test_test_epochs_skip_the_test_split_elsewhere_and_change_nothing_in_training(data_dir) -> None:
    """A search trial evaluates the test split only where it can end: the same training
    (evaluation draws no random number, moves no state), the test metric at those epochs."""
    from mlrsnet.harness.loop import train

    cell = Cell("resnet18-cifar10", "smoke", "mlrsnet", {}, overrides={"epochs": 3})
    every = train(cell)
    some = train(cell, test_epochs=(1, 3))
    assert some.steps == every.steps
    assert [r for r in some.epochs if r["split"] != "test"] == [r for r in every.epochs if r["split"] != "test"]
    assert sorted({r["epoch"] for r in some.epochs if r["split"] == "test"}) == [1, 3]
    assert some.final("test", "acc") == every.final("test", "acc")


def test_a_divergence_is_named_by_the_value_that_was_not_finite() -> None:
    from mlrsnet.harness.loop import divergence_reason

    assert divergence_reason(0.1, float("inf")) == "training loss inf (not finite)"
    assert divergence_reason(float("nan"), 2.3) == "the method's LR nan (not finite)"
