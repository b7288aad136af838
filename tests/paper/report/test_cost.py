"""The cost report (``report cost``) on a small store made by real smoke runs (2 epochs),
trained once per session:

- ``tbl``: the trials of one grid search (``search_id`` S1) of MultiStep on ResNet-18 /
  CIFAR-10, one finished, one diverged (a huge LR) and one failed (SVHN is not prepared
  here), plus a trial of an older search S0 that no tuned run points at;
- ``fig1_meta_train``: MLR-SNet meta-trained on ResNet-18 / CIFAR-10, seeds 0 and 1;
- ``nodata``: one failed run;
- ``fig2``: MultiStep retrained from S1's best trial (tag ``tuned``, seeds 0 and 1), the
  transferred MLR-SNet (our checkpoints) on ResNet-18 / CIFAR-10 and the 2-layer LSTM / PTB,
  and MLR-SNet meta-trained on the LSTM task itself.

The reference values are summed here from the store's own ``wall_time_s`` column, not
taken from the module under test.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from support.smoke import smoke_cells

from mlrsnet.errors import UserError
from mlrsnet.harness.executor import run_local
from mlrsnet.harness.store import Store
from mlrsnet.paper.report import REPORTS, render
from mlrsnet.paper.report import cost as C
from mlrsnet.paper.report import figures as F

EXP, SEARCH_EXP, META_EXP = "fig2", "tbl", "fig1_meta_train"
CIFAR, PTB = "resnet18-cifar10", "lstm2-ptb"
S1, S0 = "s1@20260101T000000Z", "s0@20250101T000000Z"
MULTISTEP = {"name": "multistep", "hparams": {"lr": 0.1, "decay": 0.1}}
TUNED, TRANSFER, META = "MultiStep (grid)", "MLR-SNet (transferred)", "MLR-SNet (meta-trained)"




def _trial(task, hparams, k, search_id=S1):
    [cell] = smoke_cells(SEARCH_EXP, [task], [{"name": "multistep", "hparams": hparams}], [0])
    return cell.with_(tags={"search_id": search_id, "search": "grid", "objective": "val/acc", "trial": k})


def _run(cells, store, expect):
    outcomes = run_local(cells, store, quiet=True)
    assert sorted(outcomes.values()) == sorted(expect), outcomes
    return outcomes


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("cost") / "results")
    best = _trial(CIFAR, MULTISTEP["hparams"], 0)
    _run([best, _trial(CIFAR, {"lr": 1e12, "decay": 0.1}, 1), _trial(CIFAR, {"lr": 0.05, "decay": 0.1}, 0, S0)],
         store, ["finished", "diverged", "finished"])
    with pytest.raises(UserError, match="svhn"):  # recorded as a failed trial, with its wall time
        run_local([_trial("resnet18-svhn", MULTISTEP["hparams"], 2)], store, quiet=True)
    with pytest.raises(UserError, match="svhn"):  # an experiment with no finished run
        run_local(smoke_cells("nodata", ["resnet18-svhn"], [MULTISTEP], [0]), store, quiet=True)
    _run(smoke_cells(META_EXP, [CIFAR], [{"name": "mlrsnet", "label": META}], [0, 1]), store, ["finished"] * 2)
    tuned = {"experiment": SEARCH_EXP, "search": "grid", "task": CIFAR, "profile": "smoke", "search_id": S1,
             "from_run": best.run_id}
    cells = [c.with_(tags={"tuned": tuned}) for c in smoke_cells(EXP, [CIFAR], [{**MULTISTEP, "label": TUNED}], [0, 1])]
    cells += smoke_cells(EXP, [CIFAR, PTB], [{"name": "mlrsnet-transfer", "label": TRANSFER,
                                         "hparams": {"checkpoints": "ours"}}], [0])
    cells += smoke_cells(EXP, [PTB], [{"name": "mlrsnet", "label": META}], [0])
    _run(cells, store, ["finished"] * 5)
    return store


@pytest.fixture(scope="session")
def data(store):
    return F.load(store, EXP)


@pytest.fixture(scope="session")
def frame(data, store):
    return C.cost_frame(data, store)[0].set_index(["task", "label"])


# -- reference values, summed from the store ---------------------------------------------------
def _runs(store, experiment, **match):
    runs = store.runs(experiment)
    for key, value in match.items():
        runs = runs[runs[key] == value]
    return runs


def _search_trials(store, search_id=S1):
    runs = store.runs(SEARCH_EXP)
    return runs[runs["tags"].map(lambda t: t.get("search_id") == search_id)]


def _pe(runs):
    return [r["method_info"].get("params", 0) * (r["epochs_done"] or 0) if r["method_info"] else 0.0
            for _, r in runs.iterrows()]


def _own(store, task, label):
    runs = _runs(store, EXP, task=task)
    return runs[runs["tags"].map(lambda t: t.get("label") == label)]


def _meta_wall(store):
    return _runs(store, META_EXP, method="mlrsnet", task=CIFAR)["wall_time_s"].mean()


# -- the numbers -------------------------------------------------------------------------------
def test_the_search_trials_are_what_the_fixture_made(store):
    trials = _search_trials(store)
    assert sorted(trials["status"]) == ["diverged", "failed", "finished"]
    assert (trials["wall_time_s"] > 0).all()


def test_a_tuned_label_costs_its_mean_run_plus_its_whole_search_once_for_two_seeds(store, frame):
    row = frame.loc[(CIFAR, TUNED)]
    own = _own(store, CIFAR, TUNED)
    assert row["seeds"] == 2 == len(own)
    search = _search_trials(store)["wall_time_s"].sum()
    assert row["search_trials"] == 3  # finished, diverged and failed; not the older search S0
    assert row["search_wall_s"] == pytest.approx(search)
    assert row["own_wall_s"] == pytest.approx(own["wall_time_s"].mean())
    assert row["total_wall_s"] == pytest.approx(own["wall_time_s"].mean() + search)  # not 2 x search
    assert row["meta_wall_s_full"] == 0 and row["meta_wall_s_amortised"] == 0
    pe = sum(_pe(_search_trials(store))) + sum(_pe(own)) / 2
    assert row["total_param_epochs"] == pytest.approx(pe) and pe > 0
    assert row["search_over_meta"] == pytest.approx(search / _meta_wall(store))
    assert bool(row["complete"]) and row["note"] == ""


def test_the_transferred_mlrsnet_carries_half_of_one_meta_training_on_each_of_its_two_tasks(store, frame):
    meta = _meta_wall(store)
    meta_runs = _runs(store, META_EXP, method="mlrsnet", task=CIFAR)
    assert len(meta_runs) == 2  # seeds 0 and 1: their mean is one meta-training
    for task in (CIFAR, PTB):
        row = frame.loc[(task, TRANSFER)]
        own = _own(store, task, TRANSFER)["wall_time_s"].mean()
        assert row["meta_tasks"] == 2
        assert row["meta_wall_s_full"] == pytest.approx(meta)
        assert row["meta_wall_s_amortised"] == pytest.approx(meta / 2)
        assert row["search_wall_s"] == 0
        assert row["total_wall_s"] == pytest.approx(own + meta / 2)
        assert row["meta_param_epochs_amortised"] == pytest.approx(sum(_pe(meta_runs)) / 2 / 2)


def test_mlrsnet_meta_trained_on_the_task_costs_just_its_own_run(store, frame):
    row = frame.loc[(PTB, META)]
    own = _own(store, PTB, META)
    assert row["total_wall_s"] == pytest.approx(own["wall_time_s"].iloc[0])
    assert row["total_param_epochs"] == pytest.approx(_pe(own)[0])
    assert row["search_wall_s"] == 0 and row["meta_wall_s_full"] == 0


def test_best_metric_is_the_seed_mean_of_each_runs_best_epoch(store, frame):
    ep = store.read("epochs", EXP)
    test = ep[(ep["split"] == "test")]
    own = _own(store, CIFAR, TUNED)
    acc = test[test["run_id"].isin(own["run_id"]) & (test["metric"] == "acc")]
    assert frame.loc[(CIFAR, TUNED), "best_test"] == pytest.approx(acc.groupby("run_id")["value"].max().mean())
    ptb = _own(store, PTB, META)
    ppl = test[test["run_id"].isin(ptb["run_id"]) & (test["metric"] == "ppl")]
    assert frame.loc[(PTB, META), "best_test"] == pytest.approx(ppl["value"].min())


# -- what is missing is said, not crashed on ---------------------------------------------------
def test_a_missing_meta_training_experiment_draws_the_point_with_its_own_cost_and_says_why(data, store, tmp_path):
    frame, meta = C.cost_frame(data, store, meta_experiment="nope")
    assert meta.missing and "no runs for experiment 'nope'" in meta.missing
    frame = frame.set_index(["task", "label"])
    row = frame.loc[(PTB, TRANSFER)]
    assert math.isnan(row["meta_wall_s_full"]) and not row["complete"]
    assert row["total_wall_s"] == pytest.approx(_own(store, PTB, TRANSFER)["wall_time_s"].iloc[0])
    assert "meta-training cost missing" in row["note"]
    assert bool(frame.loc[(CIFAR, TUNED), "complete"])  # the others are not affected
    paths = C.render_cost(store, tmp_path, EXP, meta_experiment="nope")
    assert {"cost.png", "cost.md", "cost.csv"} <= {p.name for p in paths}
    md, caption = (tmp_path / "cost.md").read_text(), (tmp_path / "cost.caption.txt").read_text()
    assert "| missing |" in md and "no runs for experiment 'nope'" in md
    assert "the meta-training cost is missing" in caption and "Hollow markers" in caption


def test_a_search_no_longer_in_the_store_is_reported_missing():
    store = Store("/nonexistent-results")
    cost = C.search_cost(store, {"experiment": SEARCH_EXP, "search": "grid", "search_id": "gone"})
    assert math.isnan(cost.wall_s) and "no experiment 'tbl'" in cost.missing
    assert "names no search_id" in C.search_cost(store, {"experiment": SEARCH_EXP, "search": "grid"}).missing


def test_a_meta_training_experiment_without_the_meta_run_says_so(store):
    cost = C.meta_training_cost(store, SEARCH_EXP)
    assert cost.missing == (f"no finished mlrsnet run on {CIFAR} in experiment {SEARCH_EXP!r} under "
                            f"{store.root} (none)")


# -- the files ---------------------------------------------------------------------------------
def test_render_cost_writes_the_figures_the_table_and_a_caption_that_says_how_it_counts(store, tmp_path):
    assert REPORTS["cost"].artefacts == "cost_artefacts" and REPORTS["cost"].default == "fig2_meta_test"
    paths = render("cost", results=store.root, out=tmp_path, experiment=EXP)
    names = {p.name for p in paths}
    for stem in ("cost", "cost-param-epochs"):
        assert {f"{stem}.png", f"{stem}.pdf", f"{stem}.caption.txt"} <= names
        assert (tmp_path / f"{stem}.png").stat().st_size > 10_000
    assert {"cost.md", "cost.csv"} <= names
    csv = pd.read_csv(tmp_path / "cost.csv")
    assert len(csv) == 4 and set(csv["task"]) == {CIFAR, PTB}
    tuned = csv[csv["label"] == TUNED].iloc[0]
    assert tuned["total_wall_s"] == pytest.approx(_own(store, CIFAR, TUNED)["wall_time_s"].mean()
                                                  + _search_trials(store)["wall_time_s"].sum())
    caption = (tmp_path / "cost.caption.txt").read_text()
    for part in ("Profile smoke", "scaled-down profile", "seeds 0, 1", "highest over epochs",
                 "lowest over epochs", "mean over seeds", "counted once per task and label, not once per seed",
                 "1/2 of it", "wall-clock seconds", "49x / 289x"):
        assert part in caption, part
    assert "parameter-epochs" in (tmp_path / "cost-param-epochs.caption.txt").read_text()
    md = (tmp_path / "cost.md").read_text()
    assert "## ResNet-18 on CIFAR-10 (resnet18-cifar10)" in md and "(1/2)" in md and "[3]" in md


def test_one_panel_per_task_log_x_one_marker_per_label(data, store):
    frame, _ = C.cost_frame(data, store)
    for measure in ("wall", "param-epochs"):
        fig = C.build_cost(data, frame, measure)
        axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
        assert [ax.get_title() for ax in axes] == ["ResNet-18 on CIFAR-10", "2-layer LSTM on Penn Treebank"]
        for ax in axes:
            assert ax.get_xscale() == "log"
            assert ("seconds" if measure == "wall" else "parameter-epochs") in ax.get_xlabel()
        assert axes[0].get_ylabel() == "best test accuracy (%)"
        markers = [ln for ln in axes[0].get_lines() if ln.get_linestyle() == "None"]
        assert [ln.get_label() for ln in markers] == [TUNED, TRANSFER]
        assert len({ln.get_marker() for ln in markers}) == 2
        x = frame.set_index(["task", "label"]).loc[(CIFAR, TUNED)]
        col = "total_wall_s" if measure == "wall" else "total_param_epochs"
        assert markers[0].get_xdata()[0] == pytest.approx(x[col])
        assert markers[0].get_ydata()[0] == pytest.approx(100 * x["best_test"])
        legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert legend == [TUNED, TRANSFER, META]


def test_report_all_renders_the_cost_figure_and_the_index_lists_it(store, tmp_path):
    assert "cost" in dict(F.builders())
    paths = render("all", results=store.root, out=tmp_path, experiment=EXP)
    assert {"cost.png", "cost-param-epochs.png", "cost.md", "index.md"} <= {p.name for p in paths}
    md = (tmp_path / "index.md").read_text()
    assert f"## {EXP}: cost in wall-clock seconds (not in the paper)" in md
    assert "](cost.png)" in md and "](cost.csv)" in md
    assert f"mlrsnet-bench report cost --experiment {EXP}" in md
    assert 'href="cost.png"' in (tmp_path / "index.html").read_text()


def test_an_experiment_without_a_finished_run_is_listed_as_not_drawn(store, tmp_path):
    with pytest.raises(UserError, match="no finished run"):
        render("cost", results=store.root, out=tmp_path, experiment="nodata")
    paths = render("all", results=store.root, out=tmp_path, experiment="nodata")
    assert [p.name for p in paths] == ["index.md", "index.html"]
    md = (tmp_path / "index.md").read_text()
    assert "## nodata: compute to reach the best test metric (table)" in md
    assert md.count("Not drawn**: no finished run to draw") == len([a for b in dict(F.builders()).values()
                                                                      for a in b(F.load(store, "nodata"), tmp_path,
                                                                                 False)])
