"""The figure renderers (``figures``, ``lr-schedules``, ``profile``, ``summary``, ``index``,
``all``) on a small store made by real smoke runs, trained once per session: ResNet-18 /
CIFAR-10 and the 2-layer LSTM on PTB, three methods (fixed with two seeds, multistep, the
transferred MLR-SNet with our checkpoints), 2 epochs; and ResNet-18 on SVHN, which is not
prepared here, so its run is recorded as failed.  The experiment's resolved spec is stored
beside its results, as ``run`` and ``reproduce`` store it."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pandas as pd
import pytest
from support.smoke import smoke_cells

from mlrsnet.errors import UserError
from mlrsnet.harness.executor import run_local
from mlrsnet.harness.store import Store
from mlrsnet.paper.report import REPORTS, render
from mlrsnet.paper.report import figures as F

EXP = "figs"
TASKS = ["resnet18-cifar10", "lstm2-ptb"]
METHODS = [{"name": "fixed", "label": "Fixed (0.1)", "hparams": {"lr": 0.1}},
           {"name": "multistep", "label": "MultiStep", "hparams": {"lr": 0.1, "decay": 0.1}},
           {"name": "mlrsnet-transfer", "label": "MLR-SNet (ours)", "hparams": {"checkpoints": "ours"}}]
LABELS = [m["label"] for m in METHODS]
REFERENCE_LINES = ("chance accuracy", "unigram-model perplexity")


def _spec(methods):
    from mlrsnet.harness.experiment import parse_spec
    from mlrsnet.paper.report.references import stored_spec

    return stored_spec(parse_spec({"name": EXP, "profile": "smoke", "seeds": [0, 1],
                                   "tasks": [*TASKS, "resnet18-svhn"], "methods": methods}))


@pytest.fixture(scope="session")
def results(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("figures") / "results")
    store.write_spec(EXP, _spec(METHODS))
    cells = smoke_cells(EXP, TASKS, METHODS, [0]) + smoke_cells(EXP, TASKS, METHODS[:1], [1])
    outcomes = run_local(cells, store, quiet=True)
    assert set(outcomes.values()) == {"finished"}, outcomes
    trials = [{"name": "fixed", "hparams": {"lr": lr}} for lr in (0.1, 0.05)]  # no label: both "fixed"
    assert set(run_local(smoke_cells("trials", TASKS[:1], trials, [0]), store, quiet=True).values()) == {"finished"}
    for name in (EXP, "nodata"):  # svhn is not prepared: the run is recorded as failed
        with pytest.raises(UserError, match="svhn"):
            run_local(smoke_cells(name, ["resnet18-svhn"], METHODS[:1], [0]), store, quiet=True)
    return store


@pytest.fixture(scope="session")
def data(results):
    return F.load(results, EXP)


@pytest.fixture(scope="session")
def rendered(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    return out, render("all", results=results.root, out=out, experiment=EXP)


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]


def _legend_labels(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def _method_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_label() in LABELS or ln.get_label().startswith("fixed")]


def test_curves_one_panel_per_task_one_line_per_method_band_for_two_seeds(data):
    fig = F.build_curves(data)
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == ["ResNet-18 on CIFAR-10", "2-layer LSTM on Penn Treebank"]
    for ax in axes:
        assert len(_method_lines(ax)) == 3
        assert len(ax.collections) == 1  # the min-max band of the two fixed seeds
        assert ax.get_xlabel() == "epoch"
    assert axes[0].get_ylabel() == "test accuracy (%)"
    assert axes[1].get_ylabel().startswith("test perplexity")
    assert _legend_labels(fig) == [*LABELS, *REFERENCE_LINES]
    assert "n = 1, 2 seeds; band: min-max" in fig._suptitle.get_text()
    # the drawn mean is the seeds' mean of the stored test accuracy, in percent
    ep = data.test
    fixed = ep[(ep["task"] == "resnet18-cifar10") & (ep["label"] == "Fixed (0.1)")]
    line = axes[0].get_lines()[0]
    assert list(line.get_ydata()) == pytest.approx(list(fixed.groupby("epoch")["value"].mean() * 100))
    # the reference levels: chance (one over CIFAR-10's classes), the unigram model computed
    # from the corpus (train-split frequencies on the test split, independently here)
    chance = [ln for ln in axes[0].get_lines() if ln.get_label() == "chance accuracy"]
    assert list(chance[0].get_ydata()) == pytest.approx([10.0, 10.0])
    unigram = [ln for ln in axes[1].get_lines() if ln.get_label() == "unigram-model perplexity"]
    assert unigram[0].get_ydata()[0] == pytest.approx(_unigram_ptb(), rel=1e-9)


def _unigram_ptb() -> float:
    import math
    import os
    from collections import Counter
    from pathlib import Path

    root = Path(os.environ["MLRSNET_DATA_DIR"]) / "ptb"
    words = lambda name: [w for line in (root / name).read_text().splitlines() for w in line.split() + ["<eos>"]]  # noqa: E731
    train, test = words("train.txt"), words("test.txt")
    counts = Counter(train)
    return math.exp(-sum(math.log(counts[w] / len(train)) for w in test) / len(test))


def test_caption_states_profile_seeds_checkpoints_and_convention(data):
    cap = F.curves_caption(data)
    for part in ("Profile smoke", "scaled-down profile", "seeds 0, 1", "checkpoint set ours-mini",
                 "gate convention meta-train", "min-max"):
        assert part in cap


def test_a_capped_vocabulary_is_stated_in_the_caption(data):
    assert "vocabulary capped" not in F.caption_facts(data)  # PTB smoke: its own 10,000 words
    runs = data.runs.copy()
    lm = runs["task"] == "lstm2-ptb"
    runs.loc[lm, "data"] = runs.loc[lm, "data"].map(
        lambda d: {**d, "profile": {**d["profile"], "vocab_size": 5000}})
    assert ("vocabulary capped (lstm2-ptb its 5,000 most frequent training words"
            in F.caption_facts(data, runs))


def test_legends_follow_the_stored_spec_order_and_never_a_file_in_the_working_folder(
        data, results, tmp_path, monkeypatch):
    assert F.labels_of(data) == LABELS
    (tmp_path / "benchmarks").mkdir()  # a spec file in the working folder says nothing
    reverse = "".join(f'[[methods]]\nname = "{m["name"]}"\nlabel = "{m["label"]}"\n' for m in METHODS[::-1])
    (tmp_path / "benchmarks" / f"{EXP}.toml").write_text(reverse)
    monkeypatch.chdir(tmp_path)
    assert F.labels_of(F.load(results, EXP)) == LABELS
    results.write_spec(EXP, _spec(METHODS[::-1]))  # the stored spec does
    try:
        again = F.load(results, EXP)
        assert F.labels_of(again) == LABELS[::-1]
        assert _legend_labels(F.build_curves(again))[0] == LABELS[-1]
    finally:
        results.write_spec(EXP, _spec(METHODS))


def test_each_method_keeps_its_colour_and_marker_whatever_its_place(data, results):
    from mlrsnet.paper.report.style import base_style

    fig = F.build_curves(data)
    ax = _visible(fig)[0]
    for line in _method_lines(ax):
        style = base_style(line.get_label())
        assert (line.get_color(), line.get_marker()) == (style.color, style.marker)
    assert base_style("MLR-SNet (ours)").color == base_style("MLR-SNet (transferred)").color
    assert base_style("MultiStep (BOHB)") != base_style("MultiStep (BayesOpt)")


def test_lr_schedules_log_scale_one_line_per_method(data, results):
    fig = F.build_lr_schedules(data)
    axes = _visible(fig)
    assert len(axes) == 2
    steps = results.read("steps", EXP)
    for ax in axes:
        assert ax.get_yscale() == "log"
        assert ax.get_xlabel() == "training step"
        assert len(ax.get_lines()) == 3
    fixed = data.runs[(data.runs["task"] == "lstm2-ptb") & (data.runs["label"] == "Fixed (0.1)")]
    seed0 = fixed[fixed["seed"] == 0]["run_id"].iloc[0]
    assert list(axes[1].get_lines()[0].get_ydata()) == list(steps[steps["run_id"] == seed0]["lr"])


@pytest.fixture
def learned(monkeypatch):
    """Smoke runs (2 epochs) sit near chance; these tests check the arithmetic on them as if
    they had learned something (near-chance handling: test_verdict.py)."""
    from mlrsnet.paper.report import data as D

    monkeypatch.setattr(D, "NEAR_CHANCE", -1e9)


def test_smoke_runs_are_near_chance_and_the_profile_leaves_such_tasks_out(data):
    assert F.near_chance_tasks(data) == TASKS
    assert F.profile_tasks(data) == []
    assert np.isinf(F.ratios(data)["ratio"]).all()


def test_performance_profile_from_final_metrics(data, results, learned):
    r = F.ratios(data).set_index(["task", "label"])
    assert r.groupby("task")["ratio"].min().tolist() == pytest.approx([1.0, 1.0])
    ep = results.read("epochs", EXP)
    runs = results.runs(EXP)
    ms = runs[(runs["task"] == "resnet18-cifar10") & (runs["method"] == "multistep")]["run_id"].iloc[0]
    acc = ep[(ep["run_id"] == ms) & (ep["split"] == "test") & (ep["metric"] == "acc") & (ep["epoch"] == 2)]
    best = max(r.loc["resnet18-cifar10", "final"])
    assert r.loc[("resnet18-cifar10", "MultiStep"), "ratio"] == pytest.approx(
        (1 - acc["value"].iloc[0]) / (1 - best))
    taus = F.taus_for(data)
    rho = F.profile_curve(data, taus)
    assert list(rho) == LABELS
    for curve in rho.values():
        assert (curve[1:] >= curve[:-1]).all() and curve[-1] == 1.0  # every method ran on every task
    assert sum(c[0] for c in rho.values()) >= 1.0  # each task has a best method at tau = 1
    fig = F.build_profile(data)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_lines()) == 3
    assert len([t for t in ax.get_xticks() if 1.0 <= t <= taus.max()]) >= 4  # readable axis


@pytest.mark.parametrize("top, expected", [
    (100.0, [1, 2, 5, 10, 20, 50, 100]),
    (1.6, [1, 1.1, 1.2, 1.3, 1.5]),
    (1.12, [1, 1.02, 1.04, 1.06, 1.08, 1.1]),
    (1.04, [1, 1.01, 1.02, 1.03, 1.04]),
])
def test_tau_ticks_label_a_narrow_profile_as_well_as_a_wide_one(top, expected):
    assert F.tau_ticks(top) == pytest.approx(expected)


def test_epochs_to_target_and_summary(data, learned):
    e = F.epochs_to_target(data)
    assert len(e) == 6
    best = F.ratios(data).query("ratio == 1")
    reached = e.set_index(["task", "label"])["epochs_to_target"]
    assert len(best) >= 2
    for row in best.itertuples():  # the best method reaches the target, at its last epoch at the latest
        assert 1 <= reached.loc[(row.task, row.label)] <= 2
    s = F.summary_frame(data).set_index(["task", "label"])
    assert s.loc[("resnet18-cifar10", "Fixed (0.1)"), "seeds"] == 2
    assert s.loc[("lstm2-ptb", "MultiStep"), "seeds"] == 1
    assert (s["wall_time_s"] > 0).all()
    assert (s["final_min"] <= s["final_mean"]).all() and (s["final_mean"] <= s["final_max"]).all()


def test_all_writes_every_file_and_the_index_lists_them_with_the_missing_task(rendered, results):
    out, paths = rendered
    names = {p.name for p in paths}
    for stem in ("curves", "lr-schedules"):
        assert {f"{EXP}-{stem}.png", f"{EXP}-{stem}.pdf", f"{EXP}-{stem}.caption.txt"} <= names
        assert (out / f"{EXP}-{stem}.png").stat().st_size > 10_000
    # two smoke epochs learn next to nothing: no task counts in a performance profile
    assert f"{EXP}-profile.png" not in names
    assert "**Not drawn**: every method is near chance on every task" in (out / "index.md").read_text()
    for stem in ("summary", "epochs-to-target"):
        assert {f"{EXP}-{stem}.md", f"{EXP}-{stem}.csv"} <= names
    assert {"index.md", "index.html"} <= names
    md = (out / "index.md").read_text()
    html = (out / "index.html").read_text()
    for p in paths:
        if p.name.startswith(EXP) and not p.name.endswith(".caption.txt"):
            assert f"]({p.name})" in md and f'href="{p.name}"' in html
    links = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert links and all("/" not in link for link in links)  # linked relatively: opens from disk
    assert f"mlrsnet-bench report figures --experiment {EXP} --results {results.root} --out {out}" in md
    assert "Runs behind it: 8." in md
    assert "ResNet-18 on SVHN (resnet18-svhn): no finished run (1 failed)" in md
    assert "svhn" in (out / f"{EXP}-summary.md").read_text()
    summary = pd.read_csv(out / f"{EXP}-summary.csv")
    assert len(summary) == 6 and set(summary["task"]) == set(TASKS)


def test_index_alone_links_what_is_rendered_and_says_what_is_not(results, tmp_path):
    render("figures", results=results.root, out=tmp_path, experiment=EXP)
    paths = render("index", results=results.root, out=tmp_path, experiment=EXP)
    assert [p.name for p in paths] == ["index.md", "index.html"]
    md = paths[0].read_text()
    assert f"]({EXP}-curves.png)" in md
    assert f"not rendered yet: run `mlrsnet-bench report summary --experiment {EXP}" in md


def test_an_experiment_without_data_lists_the_reason_instead_of_crashing(results, tmp_path):
    with pytest.raises(UserError, match="no finished run"):
        render("figures", results=results.root, out=tmp_path, experiment="nodata")
    paths = render("all", results=results.root, out=tmp_path, experiment="nodata")
    assert [p.name for p in paths] == ["index.md", "index.html"]
    md = (tmp_path / "index.md").read_text()
    assert "Not drawn**: no finished run to draw" in md
    assert "ResNet-18 on SVHN (resnet18-svhn): no finished run (1 failed): Dataset 'svhn' is not prepared" in md
    assert not list(tmp_path.glob("*.png"))


def test_runs_sharing_a_label_and_seed_are_told_apart_not_averaged(results):
    data = F.load(results, "trials")
    assert sorted(F.labels_of(data)) == ["fixed (lr=0.05)", "fixed (lr=0.1)"]
    assert len(_method_lines(F.build_curves(data).axes[0])) == 2


def test_report_help_lists_exactly_the_registered_reports():
    from mlrsnet.harness.cli import build_parser

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        build_parser().parse_args(["report", "--help"])
    choices = buf.getvalue().split("{", 1)[1].split("}", 1)[0].split(",")
    assert choices == list(REPORTS)
    assert {"figures", "lr-schedules", "profile", "summary", "index", "all"} <= set(REPORTS)


def test_a_held_out_sweep_caption_gives_the_sizes_and_their_share_of_the_training_set() -> None:
    from mlrsnet.paper.report.figures import caption_facts

    runs = pd.DataFrame({
        "profile": ["cpu"] * 3, "seed": [0, 0, 1],
        "overrides": [{"holdout": 100}, {"holdout": 500}, {}],
        "method_info": [{"sizes": {"train": 4900, "val": 100}}, {"sizes": {"train": 4500, "val": 500}},
                        {"sizes": {"train": 5000}}]})
    text = caption_facts(None, runs)
    assert "held-out sets of 100, 500 of the 5,000 training images (2 %, 10 %" in text
    assert "scaled-down profile keeps the paper's shares" in text
    assert "held-out" not in caption_facts(None, runs.assign(overrides=[{}, {}, {}]))


def test_the_summary_lists_mlrsnets_gamma_and_its_starting_loss_per_run(rendered):
    """Issue 22: gamma's starting loss per run is in the report's data.  One row per MLR-SNet
    run and none for the schedules; on the image task gamma is the official formula of the
    recorded loss, |sqrt(L) ln(L C) / C^(1/4) / 4| with C = 10, worked out here."""
    import math

    out, _ = rendered
    g = pd.read_csv(out / f"{EXP}-gamma.csv")
    assert list(g.columns) == ["task", "label", "seed", "run_id", "starting_loss", "gamma"]
    assert sorted(g["task"]) == sorted(TASKS) and set(g["label"]) == {"MLR-SNet (ours)"}
    row = g[g["task"] == "resnet18-cifar10"].iloc[0]
    loss = row["starting_loss"]
    assert 1.0 < loss < 5.0  # a cross-entropy over 10 classes near its start
    assert row["gamma"] == pytest.approx(abs(math.sqrt(loss) * math.log(10 * loss) / 10 ** 0.25 / 4), rel=1e-9)
    md = (out / f"{EXP}-summary.md").read_text()
    assert "MLR-SNet's LR scale gamma per run" in md and row["run_id"] in md
    assert f"`{EXP}-gamma.csv`" in (out / "index.md").read_text()  # named in the summary's caption
