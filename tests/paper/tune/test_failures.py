"""A trial whose worker dies: Tune retries it from its epoch checkpoint, a trial that still
fails is stored as failed (not "stopped by the scheduler"), and running the command again
finishes the search.  The worker is killed for real (``os._exit`` at the end of epoch 1,
once, keyed by a marker file: :attr:`TrialSetup.die_once_marker`)."""

from __future__ import annotations

import json
from functools import partial

import pandas as pd
import pytest

from mlrsnet.harness.executor import run_cell
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.files import HOST
from mlrsnet.harness.store import Store
from mlrsnet.paper.tune import command as command_module
from mlrsnet.paper.tune import search as search_module
from mlrsnet.paper.tune import tune_command
from mlrsnet.paper.tune.trial import TrialSetup

pytestmark = pytest.mark.usefixtures("ray_local")

SPEC = """
tasks = ["resnet18-cifar10"]
[tune]
searchers = ["random"]
[tune.profiles.smoke]
samples = 1
"""


def _trials(results):
    runs = Store(results).runs("tunetest")
    return runs[runs["tags"].map(lambda t: "search_id" in t)]


def _values(store: Store, table: str, run_id: str) -> pd.DataFrame:
    df = store.read(table, "tunetest")
    df = df[df["run_id"] == run_id].drop(columns="run_id")
    keys = ["epoch", "split", "metric"] if table == "epochs" else ["step"]
    return df.sort_values(keys).reset_index(drop=True)


def _uninterrupted(tmp_path, row) -> Store:
    """The same cell trained in one go, with the trial's thread count (2 CPUs per trial),
    evaluating the test split where the trial does (a random-search trial: its last epoch)."""
    store = Store(tmp_path / "reference")
    cell = Cell(task=row["task"], profile=row["profile"], method=row["method"], hparams=dict(row["hparams"]),
                seed=int(row["seed"]), experiment="tunetest", overrides=dict(row["overrides"] or {}),
                tags=dict(row["tags"]))
    assert cell.run_id == row["run_id"]
    run_cell(cell, store, device="cpu", threads=2, test_epochs=(int(row["epochs_done"]),))
    return store


@pytest.fixture
def dying_worker(tmp_path, monkeypatch):
    marker = tmp_path / "died-once"
    monkeypatch.setattr(command_module, "TrialSetup", partial(TrialSetup, die_once_marker=str(marker)))
    return marker


def test_a_trial_whose_worker_dies_is_retried_from_its_epoch_checkpoint(
        data_dir, tmp_path, make_spec, tune_args, dying_worker):
    results = tmp_path / "results"
    args = tune_args(make_spec(SPEC), results, ["--cpus-per-trial", "2"])
    assert tune_command(args) == 0
    assert dying_worker.exists()  # the worker did die once
    trials = _trials(results)
    assert len(trials) == 1
    row = trials.iloc[0]
    assert row["status"] == "finished" and int(row["epochs_done"]) == 2
    # resumed from the epoch-1 checkpoint: the same tables as an uninterrupted run, bit for bit
    store, reference = Store(results), _uninterrupted(tmp_path, row)
    for table in ("epochs", "steps"):
        pd.testing.assert_frame_equal(_values(store, table, row["run_id"]),
                                      _values(reference, table, row["run_id"]), check_exact=True)
    assert not list((results / "tunetest" / "checkpoints").glob("*.pt"))
    plan = json.loads(next((results / "tunetest" / "tune").iterdir()).joinpath("mlrsnet-search.json").read_text())
    assert plan["complete"] is True and plan["errors"] == 0


def test_a_trial_that_keeps_failing_is_stored_as_failed_and_a_rerun_finishes_the_search(
        data_dir, tmp_path, make_spec, tune_args, dying_worker, monkeypatch):
    monkeypatch.setattr(search_module, "MAX_FAILURES", 0, raising=False)  # Tune gives up at once
    results = tmp_path / "results"
    args = tune_args(make_spec(SPEC), results, ["--cpus-per-trial", "2"])
    assert tune_command(args) == 1
    row = _trials(results).iloc[0]
    assert row["status"] == "failed"  # not "stopped ... by the scheduler"
    assert "scheduler" not in row["error"] and "run the same command again" in row["error"]
    assert int(row["epochs_done"]) == 1
    assert (results / "tunetest" / "checkpoints" / f"{row['run_id']}.pt").exists()  # kept for the rerun
    search_dir = next((results / "tunetest" / "tune").iterdir())
    plan = json.loads((search_dir / "mlrsnet-search.json").read_text())
    assert plan["complete"] is False and plan["errors"] == 1

    # the rerun restarts the failed trial (the worker no longer dies) and finishes the search
    assert tune_command(args) == 0
    again = _trials(results)
    assert len(again) == 1 and again.iloc[0]["status"] == "finished"
    assert again.iloc[0]["tags"]["search_id"] == row["tags"]["search_id"]  # the same search
    assert again.iloc[0]["started"] == row["started"]  # resumed, not started afresh
    store, reference = Store(results), _uninterrupted(tmp_path, again.iloc[0])
    pd.testing.assert_frame_equal(_values(store, "epochs", row["run_id"]),
                                  _values(reference, "epochs", row["run_id"]), check_exact=True)
    assert json.loads((search_dir / "mlrsnet-search.json").read_text())["complete"] is True
    assert tune_command(args) == 0  # complete now: read from the store


def test_a_trial_restarted_under_a_new_tune_id_continues_its_earlier_run(tmp_path):
    """Tuner.restore(restart_errored=True) may give the restarted trial a new trial id: the
    trial continues the failed run of its earlier attempt (same search, number, config)."""
    from mlrsnet.paper.tune.objective import objective_for
    from mlrsnet.paper.tune.trial import earlier_attempt, trial_cell

    store = Store(tmp_path)
    setup = TrialSetup(experiment="tunetest", task="resnet18-cifar10", profile="smoke", method="multistep",
                       seed=0, epochs=2, objective=objective_for("image", "val"),
                       space={"lr": ("loguniform", 0.01, 0.5)}, store_root=str(tmp_path), data_dir=None,
                       device="cpu", cpus=1, tags={"search": "random", "search_id": "s@20250101T000000Z"})
    old = trial_cell(setup, {"lr": 0.05}, "aaaa_00000", "1_aaaa_00000")
    new = trial_cell(setup, {"lr": 0.05}, "bbbbbbbb", "1_bbbbbbbb")
    other = trial_cell(setup, {"lr": 0.07}, "cccccccc", "1_cccccccc")
    assert old.run_id != new.run_id
    assert earlier_attempt(setup, new) == new  # nothing stored yet

    def row(status, **kw):
        store.write_run_row({"run_id": old.run_id, "experiment": "tunetest", "task": old.task,
                             "profile": "smoke", "method": "multistep", "hparams": dict(old.hparams),
                             "seed": 0, "tags": dict(old.tags), "status": status, **kw})

    for status, continued in (("failed", True), ("finished", False), ("stopped", False)):
        row(status)
        got = earlier_attempt(setup, new)
        assert (got.run_id == old.run_id) is continued and got.tags["trial_id"] == (
            "aaaa_00000" if continued else "bbbbbbbb")
    row("running", host="no-such-host-but-this-is-a-name", pid=1)  # another host: may be live
    assert earlier_attempt(setup, new) == new
    row("running", host=HOST, pid=2 ** 22 + 12345)  # this host, a pid that does not exist
    assert earlier_attempt(setup, new).run_id == old.run_id
    row("failed")
    assert earlier_attempt(setup, other) == other  # another configuration: a trial of its own
