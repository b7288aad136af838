"""Each searcher runs a real search end to end on a smoke task (real CIFAR-10 subset),
through Ray Tune and into Parquet, with a two-trial budget."""

from __future__ import annotations

import json

import pytest

from mlrsnet.harness.store import Store
from mlrsnet.paper.tune import tune_command
from mlrsnet.paper.tune.results import summarize_searches

pytestmark = pytest.mark.usefixtures("ray_local")

SPEC = """
tasks = ["resnet18-cifar10"]
[tune]
searchers = ["{searcher}"]
[tune.profiles.smoke]
samples = 2
"""


def _trials(results, experiment="tunetest"):
    store = Store(results)
    runs = store.runs(experiment)
    return store, runs[runs["tags"].map(lambda t: "search_id" in t)]


@pytest.mark.parametrize("searcher", ["bayesopt", "random", "grid"])
def test_searcher_runs_two_trials_and_stores_their_curves(searcher, data_dir, tmp_path, make_spec, tune_args):
    results = tmp_path / "results"
    # two CPUs per trial: one trial at a time in one reused worker (fast on a 2-core machine)
    code = tune_command(tune_args(make_spec(SPEC.format(searcher=searcher)), results,
                                  ["--cpus-per-trial", "2"]))
    assert code == 0
    store, trials = _trials(results)
    assert len(trials) == 2
    assert set(trials["status"]) == {"finished"}
    assert set(trials["method"]) == {"multistep"}
    tags = trials["tags"].tolist()
    assert {t["search"] for t in tags} == {searcher}
    assert {t["objective"] for t in tags} == {"val/acc"}
    assert {t["searcher_seed"] for t in tags} == {{"bayesopt": 42, "random": 0, "grid": None}[searcher]}
    assert sorted(t["trial"] for t in tags) == [1, 2]  # running numbers, from 1 for every searcher
    assert all(0.01 <= hp["lr"] <= 0.5 and 0.01 <= hp["decay"] <= 0.5 for hp in trials["hparams"])
    if searcher == "grid":  # the centred 2x1 sub-grid of the paper's 14x14 candidates
        assert sorted((hp["lr"], hp["decay"]) for hp in trials["hparams"]) == [(0.04, 0.08), (0.2, 0.08)]
    versions = trials["versions"].iloc[0]
    assert {"ray", "torch", "bayesian-optimization", "hpbandster"} <= set(versions)
    epochs = store.read("epochs", "tunetest")
    for run_id in trials["run_id"]:  # the full curve: 2 epochs x train/val/test
        mine = epochs[epochs["run_id"] == run_id]
        assert sorted(mine["epoch"].unique()) == [1, 2]
        assert {"train", "val", "test"} == set(mine["split"])
    summary = summarize_searches(store.runs("tunetest"), epochs).iloc[0]
    assert summary["best_run_id"] in set(trials["run_id"])
    # Tune saw the same objective the store holds (val/acc at the last epoch)
    search_dir = next((results / "tunetest" / "tune").iterdir())
    reported = []
    for trial_dir in (p for p in search_dir.iterdir() if (p / "result.json").exists()):
        lines = (trial_dir / "result.json").read_text().splitlines()
        reported.append(json.loads(lines[-1]))
    assert len(reported) == 2
    best_reported = max(r["objective"] for r in reported)
    assert best_reported == pytest.approx(summary["best_value"])
    assert {r["epoch"] for r in reported} == {2}


def test_bohb_stops_weak_trials_early_and_records_their_partial_curves(data_dir, tmp_path, make_spec,
                                                                      tune_args):
    # three epochs: HyperBand (eta 3) runs all three trials for one epoch and continues the best
    spec = make_spec(SPEC.format(searcher="bohb").replace("samples = 2", "samples = 3")
                     + "\n[overrides]\nepochs = 3\n")
    code = tune_command(tune_args(spec, tmp_path / "results", ["--cpus-per-trial", "2"]))
    assert code == 0
    store, trials = _trials(tmp_path / "results")
    assert len(trials) == 3
    assert sorted(trials["status"]) == ["finished", "stopped", "stopped"]
    assert sorted(trials["epochs_done"].astype(int)) == [1, 1, 3]
    epochs = store.read("epochs", "tunetest")
    for row in trials.itertuples():
        assert epochs[epochs["run_id"] == row.run_id]["epoch"].max() == row.epochs_done
    assert not list((tmp_path / "results" / "tunetest" / "checkpoints").glob("*.pt"))
    summary = summarize_searches(store.runs("tunetest"), epochs).iloc[0]
    assert summary["stopped"] == 2 and summary["best_run_id"] == trials[trials["status"] == "finished"]["run_id"].iloc[0]
