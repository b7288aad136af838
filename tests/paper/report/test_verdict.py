"""The verdict on the paper's claim, near chance, diverged runs and the paper's numbers, on a
small store written by hand, so every expected number is worked out here from the values
put in (not by the code under test).

Claimed method "MLR-SNet (transferred)" against two others, two seeds each, final values:

=======================  ==================  =================  ================  =========================
task                     MLR-SNet            best other         rule               verdict
=======================  ==================  =================  ================  =========================
shufflenetv2-cifar10     50 %, 52 %          40 %, 42 % (A)     [50,52] > [40,42]  holds
mobilenetv2-cifar10      40 %, 44 %          42 %, 46 % (A)     overlap            inconclusive (spread)
lstm2-ptb                300, 310            200, 210 (A)       [300,310] > [..]   does not hold (ppl)
efficientnet_b0-cifar100 2 %, 3 %            5 %, 6 % (B)       all < 10.9 %       inconclusive (chance)
nasnet-cifar10           45 %, diverged      30 %, 31 % (A)     diverged           does not hold
resnet18-svhn            skipped (no data)                                         missing
=======================  ==================  =================  ================  =========================
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlrsnet.harness.store import Store
from mlrsnet.paper.report import figures as F
from mlrsnet.paper.report import render
from mlrsnet.paper.report.verdict import FAILS, HOLDS, UNSURE, figure_verdict

EXP = "figx"
OURS, A, B = "MLR-SNet (transferred)", "MultiStep (BayesOpt)", "MultiStep (BOHB)"
FACTS = {"shufflenetv2-cifar10": {"metric": "acc", "chance": 0.1}, "mobilenetv2-cifar10": {"metric": "acc", "chance": 0.1},
         "lstm2-ptb": {"metric": "ppl", "unigram_ppl": 600.0},
         "efficientnet_b0-cifar100": {"metric": "acc", "chance": 0.01}, "nasnet-cifar10": {"metric": "acc", "chance": 0.1},
         "resnet18-svhn": {"metric": "acc", "chance": 0.1}}
#: task -> label -> per seed: the test values of epochs 1..3 (None: the seed diverged after them)
CURVES = {
    "shufflenetv2-cifar10": {OURS: [[0.2, 0.4, 0.50], [0.2, 0.4, 0.52]], A: [[0.2, 0.3, 0.40], [0.2, 0.3, 0.42]],
                             B: [[0.2, 0.3, 0.35], [0.2, 0.3, 0.36]]},
    "mobilenetv2-cifar10": {OURS: [[0.2, 0.3, 0.40], [0.2, 0.3, 0.44]], A: [[0.2, 0.3, 0.42], [0.2, 0.3, 0.46]],
                            B: [[0.2, 0.3, 0.30], [0.2, 0.3, 0.30]]},
    "lstm2-ptb": {OURS: [[500, 400, 300], [500, 400, 310]], A: [[500, 300, 200], [500, 300, 210]],
                  B: [[500, 400, 350], [500, 400, 360]]},
    "efficientnet_b0-cifar100": {OURS: [[0.01, 0.02, 0.02], [0.01, 0.02, 0.03]],
                                 A: [[0.01, 0.03, 0.04], [0.01, 0.03, 0.04]], B: [[0.01, 0.03, 0.05], [0.01, 0.04, 0.06]]},
    "nasnet-cifar10": {OURS: [[0.2, 0.4, 0.45], [0.2, None]], A: [[0.2, 0.3, 0.30], [0.2, 0.3, 0.31]],
                       B: [[0.2, 0.25, 0.28], [0.2, 0.25, 0.29]]},
}
METHOD = {OURS: "mlrsnet-transfer", A: "multistep", B: "multistep"}
DIVERGED_STEP = 13


def _write(store: Store) -> None:
    k = 0
    for task, by_label in CURVES.items():
        metric = FACTS[task]["metric"]
        for label, seeds in by_label.items():
            for seed, values in enumerate(seeds):
                k += 1
                rid = f"r{k:03d}"
                diverged = None in values
                done = [v for v in values if v is not None]
                row = {"run_id": rid, "experiment": EXP, "task": task, "profile": "cpu", "method": METHOD[label],
                       "hparams": {}, "seed": seed, "tags": {"label": label}, "wall_time_s": 10.0,
                       "status": "diverged" if diverged else "finished", "started": f"2026-01-01T00:{k:02d}:00",
                       "method_info": {"steps_per_epoch": 6}, "epochs_done": len(done)}
                if diverged:
                    row |= {"diverged_step": DIVERGED_STEP,
                            "error": f"diverged at step {DIVERGED_STEP} (epoch 3): training loss nan (not finite)"}
                store.write_run_row(row)
                epochs = [{"epoch": e + 1, "split": "test", "metric": metric, "value": float(v)}
                          for e, v in enumerate(done)]
                n_steps = DIVERGED_STEP + 1 if diverged else 18
                steps = {"step": list(range(n_steps)), "epoch": [s // 6 + 1 for s in range(n_steps)],
                         "lr": [0.1] * n_steps, "loss": [1.0] * (n_steps - 1) + [math.nan if diverged else 1.0]}
                store.write_curves(EXP, rid, epochs, steps)
    store.write_run_row({"run_id": "svhn", "experiment": EXP, "task": "resnet18-svhn", "profile": "cpu",
                         "method": "mlrsnet-transfer", "seed": 0, "tags": {"label": OURS}, "status": "skipped",
                         "error": "no data: svhn is not prepared (`mlrsnet-bench data prepare svhn`)"})
    store.write_spec(EXP, {
        "name": EXP, "profile": "cpu", "seeds": [0, 1], "tasks": [*CURVES, "resnet18-svhn"],
        "methods": [{"name": "multistep", "label": A}, {"name": "multistep", "label": B},
                    {"name": "mlrsnet-transfer", "label": OURS}],
        "task_facts": FACTS,
        "report": {"figure": "Fig. 9", "title": "A test figure", "claim": "MLR-SNet is at least as good",
                   "ours": OURS, "paper": {"shufflenetv2-cifar10": {"final": 0.877}}}})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("verdict") / "results")
    _write(store)
    return store


@pytest.fixture(scope="module")
def data(store):
    return F.load(store, EXP)


def test_each_task_gets_the_verdict_of_the_stated_rule(data):
    fv = figure_verdict(data)
    got = {t.task: (t.verdict, t.reason, t.other_label) for t in fv.tasks}
    assert got == {
        "shufflenetv2-cifar10": (HOLDS, "better beyond the seed spread", A),
        "mobilenetv2-cifar10": (UNSURE, "within the seed spread", A),
        "lstm2-ptb": (FAILS, "worse beyond the seed spread", A),
        "efficientnet_b0-cifar100": (UNSURE, "every method near chance", B),
        "nasnet-cifar10": (FAILS, "the claimed method diverged", A),
    }
    assert fv.verdict == FAILS
    assert fv.missing == ["ResNet-18 on SVHN (svhn is not prepared)"]
    assert fv.summary() == "ahead on 1, behind on 2, inconclusive on 2 of 5 tasks (1 with every method near chance)"


def test_the_numbers_are_the_seeds_mean_and_min_max(data):
    fv = figure_verdict(data)
    shuffle = next(t for t in fv.tasks if t.task == "shufflenetv2-cifar10")
    assert (shuffle.ours.mean, shuffle.ours.lo, shuffle.ours.hi, shuffle.ours.n) == pytest.approx((0.51, 0.50, 0.52, 2))
    assert (shuffle.other.mean, shuffle.other.lo, shuffle.other.hi) == pytest.approx((0.41, 0.40, 0.42))
    assert shuffle.gap == pytest.approx(10.0)  # accuracy points, positive: ours better
    assert shuffle.paper == "final 87.7 %"
    ptb = next(t for t in fv.tasks if t.task == "lstm2-ptb")
    assert ptb.gap == pytest.approx(-100.0)  # perplexity: 305 against 205, lower is better


def test_the_experiment_page_opens_with_the_verdict_and_lists_the_diverged_run(store, tmp_path):
    render("all", results=store.root, out=tmp_path, experiment=EXP)
    md = (tmp_path / "index.md").read_text()
    assert md.index("Does the paper's claim hold here?") < md.index("(test metric per epoch)")
    assert "| Fig. 9 | MLR-SNet is at least as good |" in md and "**does not hold**" in md
    assert "| Fig. 9 | ShuffleNetV2 on CIFAR-10 | 51.0 % [50.0–52.0] | MultiStep (BayesOpt): 41.0 % [40.0–42.0] " \
           "| +10.0 pts | 2 | final 87.7 % | **holds** (better beyond the seed spread) |" in md
    assert (f"- {OURS} on NASNet-A on CIFAR-10, seed 1: diverged at step {DIVERGED_STEP} (epoch 3): training loss nan "
            "(not finite)") in md
    html = (tmp_path / "index.html").read_text()
    assert "<table>" in html and "<th>verdict</th>" in html and "<b>does not hold</b>" in html
    summary = (tmp_path / f"{EXP}-summary.md").read_text()
    assert "| MLR-SNet (transferred) | 2 | diverged |" in summary  # the mean of a diverged seed is not shown
    assert f"diverged at step {DIVERGED_STEP} (epoch 3)" in summary
    assert "near chance" in summary


def test_a_diverged_run_is_drawn_up_to_its_divergence_and_marked(data):
    fig = F.build_curves(data)
    ax = next(a for a in fig.axes if a.get_title() == "NASNet-A on CIFAR-10")
    lines = ax.get_lines()
    mean = next(ln for ln in lines if ln.get_label() == OURS)
    assert list(mean.get_ydata()) == pytest.approx([20.0, 40.0, 45.0])  # the seed that finished
    diverged = [ln for ln in lines if ln.get_linestyle() == ":" and ln.get_label() == "_nolegend_"]
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in diverged] == [([1], [pytest.approx(20.0)])]
    crosses = [ln for ln in lines if ln.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [1]  # its last finished epoch
    notes = " ".join(t.get_text() for t in ax.texts)
    assert f"{OURS}: 1 of 2 seeds diverged (step {DIVERGED_STEP})" in notes


def test_near_chance_is_marked_in_the_panel_and_never_counts_in_the_profile(data):
    fig = F.build_curves(data)
    ax = next(a for a in fig.axes if a.get_title() == "EfficientNet-B0 on CIFAR-100")
    assert "every method near chance" in " ".join(t.get_text() for t in ax.texts)
    chance = next(ln for ln in ax.get_lines() if ln.get_label() == "chance accuracy")
    assert chance.get_ydata()[0] == pytest.approx(1.0)
    # EfficientNet: every method below 1 % + 10 % of 99 % = 10.9 %: the profile leaves it out
    assert "efficientnet_b0-cifar100" in F.near_chance_tasks(data)
    assert "efficientnet_b0-cifar100" not in F.profile_tasks(data)
    r = F.ratios(data).set_index(["task", "label"])["ratio"]
    # ShuffleNet: error rates 0.49 (ours), 0.59 (A), 0.645 (B): ratios to the best, by hand
    assert r[("shufflenetv2-cifar10", A)] == pytest.approx(0.59 / 0.49)
    assert r[("shufflenetv2-cifar10", B)] == pytest.approx(0.645 / 0.49)
    assert math.isinf(r[("nasnet-cifar10", OURS)])  # a diverged seed never counts
    assert "Left out, every method near chance there: efficientnet_b0-cifar100" in F.profile_caption(data)


def test_the_missing_task_and_the_paper_numbers_are_in_the_caption(data):
    caption = F.curves_caption(data)
    assert caption.startswith("Fig. 9: A test figure.")
    assert "Missing: ResNet-18 on SVHN (svhn is not prepared)." in caption
    assert "Paper, MLR-SNet (transferred): ShuffleNetV2 on CIFAR-10 final 87.70 % (not drawn at this scale)" in caption
    assert "n = 1, 2 seeds" in caption  # the diverged seed's label has one seed left for its mean


def test_paper_profile_figures_draw_the_papers_curves_and_numbers(store, tmp_path):
    paper = Store(tmp_path)
    runs = store.runs(EXP)
    for row in runs[runs["task"] == "shufflenetv2-cifar10"].to_dict("records"):
        paper.write_run_row({**row, "profile": "paper"})
        paper.write_curves(EXP, row["run_id"], store.read("epochs", EXP).query("run_id == @row['run_id']")
                           .drop(columns="run_id").to_dict("records"), {"step": [], "epoch": [], "lr": [], "loss": []})
    spec = store.spec(EXP)
    spec["references"] = {"curves": {"shufflenetv2-cifar10": {"label": "official log", "epoch": [1, 2, 3],
                                                              "value": [0.5, 0.7, 0.9]}}}
    paper.write_spec(EXP, spec)
    ax = F.build_curves(F.load(paper, EXP)).axes[0]
    official = next(ln for ln in ax.get_lines() if ln.get_label() == "official log")
    assert list(official.get_ydata()) == pytest.approx([50.0, 70.0, 90.0])
    final = next(ln for ln in ax.get_lines() if ln.get_label().startswith("paper: MLR-SNet"))
    assert final.get_ydata()[0] == pytest.approx(87.7)


def test_three_seeds_get_a_bootstrap_interval_of_the_mean():
    from mlrsnet.paper.report.stats import spread

    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 0.1, size=400)
    s = spread(values)
    # the normal-theory 95 % interval of the mean, by hand: mean +- 1.96 sd / sqrt(n)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert s.kind == "95% bootstrap CI" and s.n == 400
    assert (s.lo, s.hi) == pytest.approx((values.mean() - half, values.mean() + half), abs=0.002)
    assert spread([0.3, 0.3, 0.3]).lo == spread([0.3, 0.3, 0.3]).hi == pytest.approx(0.3)
    three = spread([0.1, 0.2, 0.6])
    assert 0.1 <= three.lo < three.mean < three.hi <= 0.6 and spread([0.1, 0.2, 0.6]) == three  # seeded
    assert (spread([0.4, 0.5]).lo, spread([0.4, 0.5]).hi, spread([0.4, 0.5]).kind) == (0.4, 0.5, "min-max")


def test_every_shipped_figure_spec_states_its_claim_about_one_of_its_methods():
    from pathlib import Path

    from mlrsnet.harness.experiment import load_spec
    from mlrsnet.paper.report.references import check_report

    root = Path(__file__).resolve().parents[3] / "benchmarks"
    figures = sorted(root.glob("fig[0-9]_*.toml"))
    claimed = 0
    for path in figures:
        spec = load_spec(path)
        check_report(spec.report, str(path))
        if spec.report and spec.report.get("claim"):
            claimed += 1
            assert spec.report["ours"] in [m.label for m in spec.methods], path.name
            assert str(spec.report["figure"]).startswith("Fig. "), path.name
    assert claimed == 6  # Figs. 1-6


def test_an_unknown_report_key_is_refused():
    from mlrsnet.harness.experiment import SpecError
    from mlrsnet.paper.report.references import check_report

    with pytest.raises(SpecError, match="'report.clam' is not known"):
        check_report({"clam": "x"}, "spec.toml")


def test_a_profile_over_no_task_is_not_drawn_and_says_why(store, tmp_path):
    near = F.load(store, EXP, keep=lambda runs: runs["task"] == "efficientnet_b0-cifar100")
    stale = tmp_path / f"{EXP}-profile.png"
    stale.write_bytes(b"an earlier render")
    profile = F.profile_artefacts(near, tmp_path, True)[0]
    assert profile.files == [] and "every method is near chance on every task" in profile.why
    assert not stale.exists()


def test_the_claimed_methods_own_variants_are_not_what_it_is_compared_against():
    from mlrsnet.paper.report.verdict import _compared

    ours = "MLR-SNet (transferred)"
    assert not _compared("MLR-SNet (transferred, task's Nesterov 0.9)", ours, {})
    assert _compared("MultiStep (grid on B0)", ours, {})
    assert _compared("Cosine (grid on B0)", ours, {"against": ["Cosine", "SGDR"]})
    assert not _compared("MultiStep (grid on B0)", ours, {"against": ["Cosine", "SGDR"]})


def test_a_method_of_the_spec_without_any_run_is_listed_not_silently_left_out(store):
    spec = store.spec(EXP)
    spec["methods"] = [*spec["methods"], {"name": "mlrsnet-transfer", "label": "MLR-SNet (another set-up)"}]
    store.write_spec(EXP, spec)
    try:
        assert "MLR-SNet (another set-up): no run yet (a method of the stored spec)" in F.missing_reasons(
            F.load(store, EXP))
    finally:
        spec["methods"] = spec["methods"][:-1]
        store.write_spec(EXP, spec)


# -- a claimed method with two set-ups (a choice the authors' code leaves open) ---------------
VARIANT = "MLR-SNet (transferred, meta-training gates)"


def test_each_set_up_of_the_claimed_method_gets_a_verdict_of_its_own(tmp_path):
    """ShuffleNetV2, two seeds: the default set-up 40 %, 42 % and the variant 55 %, 57 % against
    MultiStep 50 %, 52 %: [40, 42] < [50, 52] does not hold, [55, 57] > [50, 52] holds; neither
    set-up is the other's comparison (same method family)."""
    from mlrsnet.paper.report.verdict import figure_row, figure_verdicts, task_rows

    store = Store(tmp_path / "results")
    finals = {OURS: [0.40, 0.42], VARIANT: [0.55, 0.57], A: [0.50, 0.52]}
    k = 0
    for label, values in finals.items():
        for seed, v in enumerate(values):
            k += 1
            store.write_run_row({"run_id": f"v{k}", "experiment": "figv", "task": "shufflenetv2-cifar10",
                                 "profile": "cpu", "method": METHOD.get(label, "mlrsnet-transfer"), "hparams": {},
                                 "seed": seed, "tags": {"label": label}, "status": "finished", "wall_time_s": 1.0,
                                 "started": f"2026-01-01T00:0{k}:00", "method_info": {"steps_per_epoch": 1}})
            store.write_curves("figv", f"v{k}", [{"epoch": 1, "split": "test", "metric": "acc", "value": v}],
                               {"step": [0], "epoch": [1], "lr": [0.1], "loss": [1.0]})
    store.write_spec("figv", {
        "name": "figv", "profile": "cpu", "seeds": [0, 1], "tasks": ["shufflenetv2-cifar10"],
        "methods": [{"name": "multistep", "label": A}, {"name": "mlrsnet-transfer", "label": OURS},
                    {"name": "mlrsnet-transfer", "label": VARIANT}],
        "task_facts": {"shufflenetv2-cifar10": FACTS["shufflenetv2-cifar10"]},
        "report": {"figure": "Fig. 9", "claim": "MLR-SNet is at least as good", "ours": OURS, "variants": [VARIANT]}})
    verdicts = figure_verdicts(F.load(store, "figv"))
    assert [(fv.ours, fv.verdict) for fv in verdicts] == [(OURS, FAILS), (VARIANT, HOLDS)]
    assert all(fv.tasks[0].other_label == A for fv in verdicts)
    assert figure_row(verdicts[1])[2].startswith(VARIANT + ": ahead on 1 of 1 task")
    assert task_rows(verdicts[0])[0][2].startswith(OURS + ": 41.0 %")
