"""A trial whose loss turns NaN is reported to the searcher as the worst value, not a crash."""

from __future__ import annotations

import json

import pytest

from mlrsnet.harness.store import Store
from mlrsnet.paper.report.table1 import load_paper_table1, table1_frame
from mlrsnet.paper.tune import tune_command

# learning rates of 1e4..1e5 blow ResNet-18 up within a few steps (loss -> inf -> NaN)
SPEC = """
tasks = ["resnet18-cifar10"]
[tune]
searchers = ["bayesopt"]
space = { lr = ["loguniform", 1e4, 1e5] }
[tune.profiles.smoke]
samples = 2
"""


@pytest.mark.usefixtures("ray_local")
def test_diverged_trials_reach_the_searcher_as_worst_value(data_dir, tmp_path, make_spec, tune_args):
    results = tmp_path / "results"
    assert tune_command(tune_args(make_spec(SPEC), results, ["--cpus-per-trial", "2"])) == 0
    store = Store(results)
    runs = store.runs("tunetest")
    trials = runs[runs["tags"].map(lambda t: "search_id" in t)]
    assert len(trials) == 2
    assert set(trials["status"]) == {"diverged"}
    assert trials["diverged_step"].notna().all()
    search_dir = next((results / "tunetest" / "tune").iterdir())
    finals = [json.loads((d / "result.json").read_text().splitlines()[-1])
              for d in search_dir.iterdir() if (d / "result.json").exists()]
    assert len(finals) == 2
    assert all(r["diverged"] is True and r["objective"] == 0.0 for r in finals)  # worst accuracy
    # Table 1 shows the search, with no best configuration to offer
    frame = table1_frame(runs, store.read("epochs", "tunetest"), load_paper_table1())
    row = frame[(frame["task"] == "resnet18-cifar10") & (frame["searcher"] == "bayesopt")].iloc[0]
    assert row["status"] == "no finished trial" and row["diverged"] == 2
