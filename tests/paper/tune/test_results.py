"""Which trial of a search is best, read back from Parquet.

The rows are written through :class:`Store` directly (not trained): these functions are
pure functions of the tables, so hand-written rows pin their rules down exactly."""

from __future__ import annotations

import itertools

import pytest

from mlrsnet.harness.store import Store
from mlrsnet.paper.tune.results import best_trial, summarize_searches

_ids = itertools.count()


def trial(store, *, status="finished", lr=0.1, gamma=0.1, val=(0.3, 0.5), test=(0.3, 0.45),
          search="bohb", search_id="s@20250101T000000Z", task="resnet18-cifar10", metric="acc",
          number=1):
    run_id = f"run{next(_ids):04d}"
    store.write_run_row({
        "run_id": run_id, "experiment": "exp", "task": task, "profile": "mini", "method": "multistep",
        "hparams": {"lr": lr, "decay": gamma}, "seed": 0, "status": status,
        "tags": {"search": search, "search_id": search_id, "objective": f"val/{metric}",
                 "searcher_seed": None, "trial": number},
    })
    rows = [{"epoch": e + 1, "split": split, "metric": metric, "value": v}
            for split, values in (("val", val), ("test", test)) for e, v in enumerate(values)]
    store.write_curves("exp", run_id, rows, {"step": [], "epoch": [], "lr": [], "loss": []})
    return run_id


def test_best_is_the_best_final_epoch_objective_among_full_budget_trials(tmp_path):
    store = Store(tmp_path)
    trial(store, lr=0.05, val=(0.6, 0.40))  # best epoch is early, final is poor
    best = trial(store, lr=0.08, gamma=0.2, val=(0.3, 0.55), test=(0.3, 0.52))
    trial(store, lr=0.30, status="stopped", val=(0.9,))  # BOHB stopped it: cannot be best
    trial(store, lr=0.50, status="diverged", val=(0.2,))
    s = best_trial(store.runs("exp"), store.read("epochs", "exp"), "s@20250101T000000Z")
    assert s["best_run_id"] == best
    assert s["best_hparams"] == {"lr": 0.08, "decay": 0.2}
    assert s["best_value"] == pytest.approx(0.55) and s["best_test"] == pytest.approx(0.52)
    assert (s["trials"], s["finished"], s["stopped"], s["diverged"]) == (4, 2, 1, 1)


def test_perplexity_searches_pick_the_lowest(tmp_path):
    store = Store(tmp_path)
    trial(store, task="lstm2-ptb", metric="ppl", lr=20.0, val=(300.0, 180.0), test=(290.0, 170.0))
    low = trial(store, task="lstm2-ptb", metric="ppl", lr=8.0, val=(250.0, 150.0), test=(240.0, 145.0))
    s = summarize_searches(store.runs("exp"), store.read("epochs", "exp")).iloc[0]
    assert s["best_run_id"] == low and s["objective"] == "val/ppl"


def test_a_restarted_search_replaces_the_old_one(tmp_path):
    store = Store(tmp_path)
    trial(store, lr=0.4, val=(0.9, 0.9), search_id="s@20250101T000000Z")
    new = trial(store, lr=0.1, val=(0.2, 0.3), search_id="s@20250102T000000Z")
    trial(store, lr=0.2, search="bayesopt", search_id="b@20240101T000000Z")
    out = summarize_searches(store.runs("exp"), store.read("epochs", "exp")).set_index("search")
    assert out.loc["bohb", "best_run_id"] == new and out.loc["bohb", "trials"] == 1
    assert out.loc["bayesopt", "trials"] == 1


def test_a_search_without_a_finished_trial_has_no_best(tmp_path):
    store = Store(tmp_path)
    trial(store, status="diverged", val=(0.1,))
    s = summarize_searches(store.runs("exp"), store.read("epochs", "exp")).iloc[0]
    assert s["best_hparams"] is None and s["diverged"] == 1


def test_ties_go_to_the_lowest_trial_number_whatever_the_row_order(tmp_path):
    """The local and the cluster summaries of the same trials read the rows in different
    orders: a tie must not be decided by row order."""
    store = Store(tmp_path)
    late = trial(store, lr=0.2, val=(0.3, 0.5), number=3)
    early = trial(store, lr=0.1, val=(0.3, 0.5), number=2)
    trial(store, lr=0.3, val=(0.3, 0.4), number=1)
    runs, epochs = store.runs("exp"), store.read("epochs", "exp")
    picks = {best_trial(order, epochs, "s@20250101T000000Z")["best_run_id"]
             for order in (runs, runs.iloc[::-1], runs.sort_values("run_id", ascending=False))}
    assert picks == {early} and early != late
    table = summarize_searches(runs.iloc[::-1], epochs).iloc[0]
    assert table["best_run_id"] == early
