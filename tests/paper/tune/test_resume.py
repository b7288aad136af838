"""An interrupted search resumes where it stopped: finished trials are kept, not re-run."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness.executor import run_cell
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store
from mlrsnet.paper.tune import tune_command
from mlrsnet.paper.tune.objective import objective_for
from mlrsnet.paper.tune.trial import TrialSetup, stored_final_report

SPEC = """
tasks = ["resnet18-cifar10"]
[tune]
searchers = ["random"]
[tune.profiles.smoke]
samples = 4
"""
#: Trials in the search.  The interrupt lands once one trial is finished; on a fast machine
#: another may finish before Tune stops, so the test asks only that the search was cut short.
SAMPLES = 4


def _trial_rows(results):
    runs = Store(results).runs("tunetest")
    return runs[runs["tags"].map(lambda t: "search_id" in t)]


def _interrupt_after_first_finished_trial(results, stop: threading.Event) -> None:
    """Ctrl-C (SIGINT to this process) once one trial is in the store as finished."""
    while not stop.is_set():
        rows = _trial_rows(results) if (results / "tunetest" / "runs").exists() else None
        if rows is not None and (rows["status"] == "finished").sum() >= 1:
            os.kill(os.getpid(), signal.SIGINT)
            return
        time.sleep(0.2)


def _run_until_interrupted(args, results) -> int:
    """``tune_command(args)``, Ctrl-C'd once its first trial has finished; its exit code."""
    stop = threading.Event()
    watcher = threading.Thread(target=_interrupt_after_first_finished_trial, args=(results, stop))
    previous = signal.signal(signal.SIGINT, lambda *_: None)  # a late signal must not end pytest
    try:
        watcher.start()
        return tune_command(args)
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ray_local")
def test_interrupted_search_resumes_without_rerunning_finished_trials(data_dir, tmp_path, make_spec,
                                                                      tune_args):
    results = tmp_path / "results"
    args = tune_args(make_spec(SPEC), results, ["--cpus-per-trial", "2"])  # one trial at a time
    assert _run_until_interrupted(args, results) == 130
    before = _trial_rows(results)
    done_before = before[before["status"] == "finished"]
    assert 1 <= len(done_before) < SAMPLES

    assert tune_command(args) == 0
    after = _trial_rows(results)
    assert len(after) == SAMPLES and set(after["status"]) == {"finished"}
    assert after["tags"].map(lambda t: t["search_id"]).nunique() == 1  # the same search, resumed
    kept = after.set_index("run_id").loc[done_before["run_id"]]
    # finished trials were not trained again: their rows are byte-for-byte the old ones
    assert list(kept["started"]) == list(done_before["started"])
    assert list(kept["finished"]) == list(done_before["finished"])
    search_dir = next((results / "tunetest" / "tune").iterdir())
    assert len([p for p in search_dir.iterdir() if p.is_dir()]) == SAMPLES  # no extra trials sampled
    # a complete search is not handed to Tune again: nothing is re-run, nothing changes
    assert tune_command(args) == 0
    assert _trial_rows(results).sort_values("run_id")["finished"].tolist() == \
        after.sort_values("run_id")["finished"].tolist()
    # a different budget is refused rather than mixed into the finished search
    with pytest.raises(UserError, match="different plan"):
        tune_command(tune_args(make_spec(SPEC), results, ["--cpus-per-trial", "2", "--samples", "5"]))


@pytest.mark.usefixtures("ray_local")
def test_an_interrupted_bohb_search_starts_again_instead_of_stalling_in_a_restore(data_dir, tmp_path,
                                                                                   make_spec, tune_args):
    """Restored, HyperBandForBOHB leaves paused trials paused for ever (ray-project/ray#39900;
    it stalled a Table 1 search here), so BOHB is not restored: the search runs again from its
    first trial under a new search id, and the interrupted one's trials stay in the store."""
    from mlrsnet.paper.tune.results import summarize_searches

    results = tmp_path / "results"
    args = tune_args(make_spec(SPEC.replace('"random"', '"bohb"')), results, ["--cpus-per-trial", "2"])
    assert _run_until_interrupted(args, results) == 130
    old_ids = set(_trial_rows(results)["tags"].map(lambda t: t["search_id"]))
    assert len(old_ids) == 1
    assert tune_command(args) == 0  # ends, rather than waiting on paused trials
    rows = _trial_rows(results)
    ids = set(rows["tags"].map(lambda t: t["search_id"]))
    assert len(ids) == 2 and old_ids < ids
    summary = summarize_searches(Store(results).runs("tunetest"), Store(results).read("epochs", "tunetest"))
    assert list(summary["search_id"]) == sorted(ids - old_ids) and int(summary["trials"].iloc[0]) == SAMPLES


def test_a_trial_already_finished_in_the_store_replays_its_final_result(data_dir, tmp_path):
    """The store's finished-run skip: a trial Tune did not see finish reports the stored
    last epoch instead of training again."""
    store = Store(tmp_path / "results")
    objective = objective_for("image", "val")
    setup = TrialSetup(experiment="tunetest", task="resnet18-cifar10", profile="smoke",
                       method="multistep", seed=0, epochs=2, objective=objective,
                       space={"lr": ("loguniform", 0.01, 0.5)}, store_root=str(store.root),
                       data_dir=str(data_dir), device="cpu", cpus=1, overrides={"holdout": 64})
    # a search on the held-out metric keeps the held-out split (tune's search_overrides)
    cell = Cell(task="resnet18-cifar10", profile="smoke", method="multistep", hparams={"lr": 0.05},
                experiment="tunetest", overrides={"holdout": 64})
    result = run_cell(cell, store, data_dir=str(data_dir), device="cpu")
    assert run_cell(cell, store, data_dir=str(data_dir), device="cpu") is None  # skipped
    report = stored_final_report(setup, cell.run_id)
    assert report["epoch"] == 2 and report["diverged"] is False
    assert report["objective"] == pytest.approx(result.final("val", "acc"))
    assert report["test_acc"] == pytest.approx(result.final("test", "acc"))


def test_a_search_whose_profile_was_redefined_since_is_started_again(data_dir, tmp_path, monkeypatch):
    """A recorded search answers for its profile only while the profile's definition is the
    one its trials trained at (as a finished run of a redefined profile is trained again)."""
    from dataclasses import replace

    from mlrsnet.paper.tasks import get_task
    from mlrsnet.paper.tune.search import redefined_since

    store = Store(tmp_path / "results")
    setup = TrialSetup(experiment="tunetest", task="resnet18-cifar10", profile="smoke",
                       method="multistep", seed=0, epochs=2, objective=objective_for("image", "val"),
                       space={"lr": ("loguniform", 0.01, 0.5)}, store_root=str(store.root),
                       data_dir=str(data_dir), device="cpu", cpus=1, overrides={"holdout": 64})
    cell = Cell(task="resnet18-cifar10", profile="smoke", method="multistep", hparams={"lr": 0.05},
                experiment="tunetest", overrides={"holdout": 64}, tags={"search_id": "s@1", "trial": 1})
    run_cell(cell, store, data_dir=str(data_dir), device="cpu")
    assert redefined_since(store, setup, {"search_id": "s@1"}) is None
    row = store.run_row("tunetest", cell.run_id)  # recorded before a field with default None existed
    store.write_run_row({**row, "data": {**row["data"], "profile": {
        k: v for k, v in row["data"]["profile"].items() if k != "vocab_size"}}})
    assert redefined_since(store, setup, {"search_id": "s@1"}) is None
    task = get_task("resnet18-cifar10")
    monkeypatch.setitem(task.profiles, "smoke", replace(task.profiles["smoke"], epochs=3))
    why = redefined_since(store, setup, {"search_id": "s@1"})
    assert why is not None and "epochs 2 -> 3" in why
    assert redefined_since(store, setup, {"search_id": "another@2"}) is None  # not its trials
