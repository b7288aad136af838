"""``mlrsnet-bench reproduce``: a plan's stages in order, resumable, then one report.

A two-stage plan at smoke size, on real data: a grid search of the fixed LR on ResNet-18 /
CIFAR-10 (2 trials), then a figure spec whose first method trains the search's best again,
beside the transferred MLR-SNet (our checkpoints) and RTHO under a held-out sweep, on
CIFAR-10 and on SVHN (not prepared here).  The shipped plan itself is checked for order:
every ``tuned`` reference names a search run by an earlier stage."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mlrsnet.harness.cli import main
from mlrsnet.harness.experiment import load_spec
from mlrsnet.harness.store import Store
from mlrsnet.paper.reproduce import DEFAULT_PLAN, load_plan
from mlrsnet.paper.tasks import get_task

REPO = Path(__file__).resolve().parents[2]

SEARCH = '''name = "srch"
profile = "smoke"
seeds = [0]
tasks = ["resnet18-cifar10"]
overrides = { epochs = 1 }
[tune]
searchers = ["grid"]
objective = "val"
method = "fixed"
[tune.profiles.smoke]
samples = 2
'''
FIGURE = '''name = "fig"
description = "Fixed LR tuned by grid search vs MLR-SNet vs RTHO"
profile = "smoke"
seeds = [0, 1]
tasks = ["resnet18-cifar10", "resnet18-svhn"]
overrides = { epochs = 1 }
[overrides_by_profile]
smoke = [{ epochs = 1, holdout = 16 }, { epochs = 1, holdout = 32 }]
[[methods]]
label = "Fixed (grid)"
tuned = { experiment = "srch", search = "grid" }
[[methods]]
name = "mlrsnet-transfer"
label = "MLR-SNet (ours)"
hparams = { checkpoints = "ours" }
[[methods]]
name = "rtho"
label = "RTHO"
'''
FIGURE_B = '''name = "fig_b"
profile = "smoke"
seeds = [0, 1]
tasks = ["resnet18-cifar10"]
overrides = { epochs = 1 }
[[methods]]
name = "mlrsnet-transfer"
label = "MLR-SNet (ours, again)"
hparams = { checkpoints = "ours" }
'''
PLAN = '''[profiles]
smoke = { search = "smoke", figure = "smoke" }
[[stages]]
name = "srch"
tune = "benchmarks/search.toml"
[[stages]]
name = "fig"
run = "benchmarks/fig.toml"
[[stages]]
name = "fig_b"
run = "benchmarks/fig_b.toml"
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "search.toml").write_text(SEARCH)
    (root / "benchmarks" / "fig.toml").write_text(FIGURE)
    (root / "benchmarks" / "fig_b.toml").write_text(FIGURE_B)
    (root / "benchmarks" / "plan.toml").write_text(PLAN)
    return root


def _reproduce(project, *extra):
    return main(["reproduce", "--plan", str(project / "benchmarks" / "plan.toml"), "--profile", "smoke",
                 "--results", str(project / "results"), "--out", str(project / "reports"), "--quiet",
                 "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def reproduced(project, ray_local):
    assert _reproduce(project) == 0
    return Store(project / "results")


def _best_fixed_lr(store):
    """The grid trial with the highest final held-out accuracy, read from the tables."""
    runs, ep = store.runs("srch"), store.read("epochs", "srch")
    val = ep[(ep["split"] == "val") & (ep["metric"] == "acc")]
    final = val[val["epoch"] == val.groupby("run_id")["epoch"].transform("max")].set_index("run_id")["value"]
    runs = runs.assign(value=runs["run_id"].map(final), trial=runs["tags"].map(lambda t: t["trial"]))
    return runs.sort_values(["value", "trial"], ascending=[False, True]).iloc[0]["hparams"]["lr"]


def test_the_search_runs_first_and_the_figure_trains_its_best_configuration(reproduced):
    runs = reproduced.runs("fig").drop_duplicates("run_id", keep="last")
    fixed = runs[(runs["method"] == "fixed") & (runs["status"] == "finished")]
    assert len(fixed) == 2 and set(fixed["seed"]) == {0, 1}
    assert {r["lr"] for r in fixed["hparams"]} == {_best_fixed_lr(reproduced)}
    assert all(t["tuned"]["experiment"] == "srch" and "search_id" in t["tuned"] for t in fixed["tags"])


def test_the_held_out_sweep_applies_to_the_methods_that_read_held_out_data_only(reproduced):
    runs = reproduced.runs("fig").drop_duplicates("run_id", keep="last")
    cifar = runs[(runs["task"] == "resnet18-cifar10") & (runs["status"] == "finished")]
    rtho = cifar[cifar["method"] == "rtho"]
    assert sorted(o["holdout"] for o in rtho["overrides"]) == [16, 16, 32, 32]
    for method in ("fixed", "mlrsnet-transfer"):
        mine = cifar[cifar["method"] == method]
        assert len(mine) == 2 and all("holdout" not in o for o in mine["overrides"])


def test_each_stage_stores_its_resolved_spec_beside_its_results(reproduced, project):
    spec = reproduced.spec("fig")
    assert [m["label"] for m in spec["methods"]] == ["Fixed (grid)", "MLR-SNet (ours)", "RTHO"]
    assert spec["seeds"] == [0, 1] and spec["profile"] == "smoke"
    assert spec["sweep"] == [{"epochs": 1, "holdout": 16}, {"epochs": 1, "holdout": 32}]  # the profile's
    assert spec["task_facts"]["resnet18-cifar10"]["chance"] == pytest.approx(0.1)
    assert spec["source"] == "benchmarks/fig.toml"  # not where this checkout is
    assert reproduced.spec("srch")["tune"]["searchers"] == ["grid"]
    # the report reads it: the legend's order is the spec's
    from mlrsnet.paper.report import figures as F

    assert F.labels_of(F.load(reproduced, "fig"))[0] == "Fixed (grid)"


def test_a_run_another_experiment_already_trained_is_copied_not_trained_again(reproduced):
    fig = reproduced.runs("fig").set_index("run_id")
    again = reproduced.runs("fig_b")
    assert len(again) == 2
    for row in again.itertuples():
        assert row.data["copied_from"] == "fig" and row.status == "finished"
        assert row.wall_time_s == fig.loc[row.run_id, "wall_time_s"]  # the cost of producing it
        assert row.tags["label"] == "MLR-SNet (ours, again)"
        mine, theirs = (reproduced.read("epochs", e) for e in ("fig_b", "fig"))
        assert mine[mine["run_id"] == row.run_id].reset_index(drop=True).equals(
            theirs[theirs["run_id"] == row.run_id].reset_index(drop=True))


def test_a_task_without_data_is_recorded_as_skipped_and_the_report_says_why(reproduced, project):
    runs = reproduced.runs("fig").drop_duplicates("run_id", keep="last")
    svhn = runs[runs["task"] == "resnet18-svhn"]
    assert len(svhn) and set(svhn["status"]) == {"skipped"}
    assert all("svhn is not prepared" in e for e in svhn["error"])
    index = (project / "reports" / "index.md").read_text()
    assert "Fixed LR tuned by grid search vs MLR-SNet vs RTHO" in index
    assert "Runs and search trials ended: 12 of about 12." in index  # 2 trials, 8 + 2 runs, SVHN not counted
    assert "not complete" not in index
    assert "fig/index.md" in index and "fig-curves.png" in index
    assert "svhn is not prepared" in (project / "reports" / "fig" / "index.md").read_text()
    assert (project / "reports" / "index.html").read_text().startswith("<!DOCTYPE html>")


def test_running_it_again_trains_nothing_and_render_only_never_trains(reproduced, project, capsys):
    before = reproduced.runs("fig")[["run_id", "status", "finished"]].sort_values("run_id").reset_index(drop=True)
    trials = len(reproduced.runs("srch"))
    assert _reproduce(project) == 0
    (project / "reports" / "index.md").unlink()
    assert _reproduce(project, "--render-only") == 0
    after = reproduced.runs("fig")[["run_id", "status", "finished"]].sort_values("run_id").reset_index(drop=True)
    assert after.equals(before) and len(reproduced.runs("srch")) == trials
    assert (project / "reports" / "index.md").exists()


def test_the_plan_listing_names_each_stage_and_its_runs(reproduced, project, capsys):
    capsys.readouterr()
    assert _reproduce(project, "--plan-only") == 0
    out = capsys.readouterr().out
    assert "srch: tune search.toml at smoke: about 2 trials, 2 ended so far" in out
    # SVHN: 2 + 4 RTHO cells, and the tuned entry 4 times (its method, so whether the sweep
    # applies to it, is not known while its search cannot run)
    assert "fig: run fig.toml at smoke: 18 runs (10 cannot run yet), 8 ended so far" in out


def test_runs_and_trials_of_a_since_redefined_profile_are_not_counted_as_ended(
        reproduced, project, capsys, monkeypatch):
    from dataclasses import replace

    task = get_task("resnet18-cifar10")
    smoke = task.profiles["smoke"]
    monkeypatch.setitem(task.profiles, "smoke", replace(smoke, eval_batch_size=smoke.eval_batch_size + 1))
    capsys.readouterr()
    assert _reproduce(project, "--plan-only") == 0
    out = capsys.readouterr().out
    assert "srch: tune search.toml at smoke: about 2 trials, 0 ended so far" in out
    assert "fig: run fig.toml at smoke: 18 runs (10 cannot run yet), 0 ended so far" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--profile", "huge"], "PROFILE 'huge' is not in"),
    (["--only", "fig9"], "--only 'fig9': no such stage"),
])
def test_bad_arguments_are_refused_with_exit_code_2(project, extra, message, capsys):
    args = ["reproduce", "--plan", str(project / "benchmarks" / "plan.toml"), "--results",
            str(project / "r2"), "--profile", "smoke", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_a_bad_plan_names_the_file_and_the_key(tmp_path, capsys):
    (tmp_path / "benchmarks").mkdir()
    plan = tmp_path / "benchmarks" / "plan.toml"
    plan.write_text('[profiles]\nsmoke = { search = "smoke", figure = "smoke" }\n'
                    '[[stages]]\nname = "x"\nrun = "benchmarks/nope.toml"\n')
    assert main(["reproduce", "--plan", str(plan), "--profile", "smoke", "--plan-only"]) == 2
    assert "key 'stages[0].run': 'benchmarks/nope.toml' does not exist" in capsys.readouterr().err


def test_the_shipped_plan_runs_every_search_before_the_figures_that_use_it():
    plan = load_plan(REPO / DEFAULT_PLAN)
    searched: dict[str, set[str]] = {}
    for profile in plan.profiles:
        searched.clear()
        for stage in plan.stages:
            spec = load_spec(stage.spec_path, profile=plan.profile_of(stage, profile))
            if stage.kind == "tune":
                assert stage.name == spec.name
                searched[spec.name] = set(tomllib.loads(stage.spec_path.read_text())["tune"]["searchers"])
                continue
            for m in spec.methods:
                if m.tuned:
                    assert m.tuned["search"] in searched.get(m.tuned["experiment"], set()), (stage.name, m.label)


def test_the_report_of_an_unfinished_reproduction_says_so_and_lists_what_is_not_drawn(project, tmp_path):
    out = tmp_path / "reports"
    assert main(["reproduce", "--plan", str(project / "benchmarks" / "plan.toml"), "--profile", "smoke",
                 "--results", str(tmp_path / "empty"), "--out", str(out), "--render-only"]) == 0
    index = (out / "index.md").read_text()
    # 2 trials; fig: the tuned entry 4 times (unresolved, so swept), MLR-SNet 2, RTHO 4; fig_b 2
    assert "Runs and search trials ended: 0 of about 14. The reproduction is not complete" in index
    assert index.count("**Not drawn**: not run yet: `mlrsnet-bench reproduce --profile smoke") == 2


def test_progress_gives_an_eta_from_this_invocations_pace_and_none_when_all_is_done(monkeypatch) -> None:
    from mlrsnet.paper import reproduce as R

    clock = iter([100.0, 160.0, 160.0])
    monkeypatch.setattr(R.time, "monotonic", lambda: next(clock))
    p = R.Progress(total=10, done=4, quiet=True)
    p.done = 6  # two runs in 60 s: 4 left take 2 minutes
    assert p.line("x").endswith("runs 6/10, elapsed 1m00s, ETA 2m00s")
    p.done = 10
    assert p.line("x").endswith("runs 10/10, elapsed 1m00s, nothing left to run")


def test_a_label_trained_again_under_another_configuration_supersedes_its_old_runs(tmp_path, data_dir):
    """A search run again finds another best configuration: the figure draws the new run and
    keeps the old one in the store, marked superseded, out of the curves and the listing."""
    from mlrsnet.harness.executor import run_cell
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.paper.report import figures as F
    from mlrsnet.paper.reproduce import supersede

    store = Store(tmp_path)
    def cell(lr):
        return Cell("resnet18-cifar10", "smoke", "fixed", {"lr": lr}, experiment="fig",
                    overrides={"epochs": 1}, label="Fixed (tuned)")
    old, new, other = cell(0.05), cell(0.1), Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.2},
                                                  experiment="fig", overrides={"epochs": 1},
                                                  label="Fixed (hand-set)")
    for c in (old, other):
        run_cell(c, store, data_dir=str(data_dir), device="cpu")
    assert supersede(store, "fig", [new, other]) == 0  # the new run is not there yet
    run_cell(new, store, data_dir=str(data_dir), device="cpu")
    assert supersede(store, "fig", [new, other]) == 1
    row = store.run_row("fig", old.run_id)
    assert row["status"] == "superseded" and new.run_id in row["error"]
    assert store.read("epochs", "fig")["run_id"].eq(old.run_id).any()  # kept
    data = F.load(store, "fig")
    assert set(data.runs["run_id"]) == {new.run_id, other.run_id} and F.missing_reasons(data) == []
    assert supersede(store, "fig", [new, other]) == 0  # once


def test_reproduce_refuses_force_instead_of_ignoring_it(tmp_path, capsys) -> None:
    """Issue 26 item 7: ``reproduce --force`` was accepted and silently ignored."""
    from mlrsnet.harness.cli import main

    code = main(["reproduce", "--profile", "smoke", "--plan-only", "--force", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "does not take --force" in err and "run SPEC --force" in err and "tune SPEC --force" in err
    assert not (tmp_path / "r").exists()
