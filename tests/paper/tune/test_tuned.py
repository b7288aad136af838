"""``tuned = {...}`` method entries: a figure run takes the best configuration a search found.

The "search" here is three real smoke runs of MultiStep on ResNet-18/CIFAR-10 tagged as the
trials of one search (no Ray: what is looked up is the store, not how it was filled).  The
expected best is read straight from the epochs table (the finished trial with the highest
final-epoch held-out accuracy), independently of the lookup under test."""

from __future__ import annotations

import json

import pytest

from mlrsnet.harness.cli import main
from mlrsnet.harness.executor import run_local
from mlrsnet.harness.experiment import SpecError, parse_spec
from mlrsnet.harness.store import Store
from mlrsnet.paper.tune.search import PLAN_FILE, search_dir
from mlrsnet.paper.tune.tuned import is_unresolved, resolve_tuned

SEARCH_ID = "resnet18-cifar10--grid--smoke--val@20260101T000000Z"
LRS = (0.02, 0.1, 0.4)


def _spec(methods, tasks=("resnet18-cifar10",), seeds=(0, 1), name="fig"):
    return parse_spec({"name": name, "profile": "smoke", "tasks": list(tasks), "seeds": list(seeds),
                       "methods": methods, "overrides": {"epochs": 2}})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("tuned") / "results")
    trials = parse_spec({"name": "searches", "profile": "smoke", "tasks": ["resnet18-cifar10"], "seeds": [0],
                         "overrides": {"epochs": 2},
                         "methods": [{"name": "multistep", "hparams": {"lr": lr, "decay": 0.1}} for lr in LRS]})
    cells = [c.with_(tags={"search_id": SEARCH_ID, "search": "grid", "objective": "val/acc", "trial": k},
                     overrides={"epochs": 2, "holdout": 64})
             for k, c in enumerate(trials.cells(), 1)]
    assert set(run_local(cells, store, quiet=True).values()) == {"finished"}
    _record(store, SEARCH_ID, complete=True)
    return store


def _record(store, search_id, complete):
    """The plan record `tune` keeps beside a search (its Tune folder), saying whether it ended."""
    folder = search_dir(store.root, "searches", "resnet18-cifar10", "grid", "smoke", "val")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PLAN_FILE).write_text(json.dumps({"search_id": search_id, "complete": complete, "errors": 0}))


def _expected_best(store):
    runs = store.runs("searches")
    ep = store.read("epochs", "searches")
    val = ep[(ep["split"] == "val") & (ep["metric"] == "acc")]
    last = val[val["epoch"] == val.groupby("run_id")["epoch"].transform("max")].set_index("run_id")["value"]
    order = runs.assign(value=runs["run_id"].map(last), trial=runs["tags"].map(lambda t: t["trial"]))
    best = order.sort_values(["value", "trial"], ascending=[False, True]).iloc[0]
    return best["run_id"], dict(best["hparams"])


def test_a_tuned_entry_trains_the_searchs_best_configuration_with_the_searched_method(store):
    spec = _spec([{"label": "MultiStep (grid)", "tuned": {"experiment": "searches", "search": "grid"}}])
    cells = spec.cells()
    assert all(is_unresolved(c) and c.method == "" for c in cells)
    resolved, notes = resolve_tuned(cells, store, "smoke")
    best_run, best_hparams = _expected_best(store)
    assert notes == [] and len(resolved) == 2
    for cell in resolved:
        assert cell.method == "multistep"
        assert dict(cell.hparams) == best_hparams
        assert cell.tags["tuned"] == {"experiment": "searches", "search": "grid", "task": "resnet18-cifar10",
                                      "profile": "smoke", "search_id": SEARCH_ID, "from_run": best_run}
        assert not is_unresolved(cell)
    assert {c.seed for c in resolved} == {0, 1}


def test_fixed_hparams_of_the_entry_win_and_another_task_can_be_named(store):
    spec = _spec([{"label": "from CIFAR-10", "hparams": {"decay": 0.5},
                   "tuned": {"experiment": "searches", "search": "grid", "task": "resnet18-cifar10"}}],
                 tasks=("nasnet-cifar10",), seeds=(0,))
    (cell,), notes = resolve_tuned(spec.cells(), store, "smoke")
    _, best = _expected_best(store)
    assert cell.task == "nasnet-cifar10" and cell.hparams == {**best, "decay": 0.5}
    assert cell.tags["tuned"]["task"] == "resnet18-cifar10"


def test_a_missing_search_leaves_the_cell_out_with_a_note_instead_of_inventing_values(store):
    spec = _spec([{"label": "BOHB", "tuned": {"experiment": "searches", "search": "bohb"}},
                  {"name": "fixed", "hparams": {"lr": 0.1}}], seeds=(0,))
    resolved, notes = resolve_tuned(spec.cells(), store, "smoke")
    assert [c.method for c in resolved] == ["fixed"]
    assert len(notes) == 1 and "no complete bohb search on resnet18-cifar10 at profile smoke" in notes[0]
    # a different search profile is a different search
    assert resolve_tuned(_spec([{"tuned": {"experiment": "searches", "search": "grid"}}]).cells(),
                         store, "mini")[0] == []


def test_a_search_not_recorded_complete_is_not_used_its_best_could_still_change(store):
    spec = _spec([{"label": "MultiStep (grid)", "tuned": {"experiment": "searches", "search": "grid"}}], seeds=(0,))
    try:
        _record(store, SEARCH_ID, complete=False)
        resolved, notes = resolve_tuned(spec.cells(), store, "smoke")
        assert resolved == [] and "no complete grid search" in notes[0]
    finally:
        _record(store, SEARCH_ID, complete=True)
    assert len(resolve_tuned(spec.cells(), store, "smoke")[0]) == 1


@pytest.mark.parametrize(("tuned", "problem"), [
    ("bayesopt", "must be a table"),
    ({"search": "grid"}, "needs 'experiment'"),
    ({"experiment": "t1"}, "needs 'search'"),
    ({"experiment": "t1", "search": "grid", "seed": 3}, "unknown key"),
    ({"experiment": "../up", "search": "grid"}, "experiment"),
    ({"experiment": "t1", "search": "grid", "task": "resnet99"}, "not a task"),
    ({"experiment": "t1", "search": "grid", "profile": "huge"}, "not a profile"),
])
def test_a_bad_tuned_reference_is_refused_naming_the_key(tuned, problem):
    with pytest.raises(SpecError, match="methods\\[0\\].tuned") as info:
        _spec([{"tuned": tuned}])
    assert problem in str(info.value)


def test_run_refuses_a_spec_with_tuned_entries_and_names_the_command_that_runs_it(tmp_path, capsys):
    spec = tmp_path / "fig.toml"
    spec.write_text('name = "fig"\nprofile = "smoke"\ntasks = ["resnet18-cifar10"]\n'
                    '[[methods]]\ntuned = { experiment = "table1", search = "bayesopt" }\n')
    assert main(["run", str(spec), "--results", str(tmp_path / "r")]) == 2
    assert "mlrsnet-bench reproduce --only fig" in capsys.readouterr().err
