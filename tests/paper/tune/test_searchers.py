"""The searcher registry: the supplement's four as before, one entry is all a new searcher
needs, and reading the registry does not import Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlrsnet.baselines.multistep import MultiStep

from mlrsnet.errors import UserError
from mlrsnet.paper.tune import plan as plan_module
from mlrsnet.paper.tune.plan import parse_tune_block, with_cli_overrides
from mlrsnet.paper.tune.searchers import SEARCHERS, TITLES, Searcher, build_searcher, register
from mlrsnet.paper.tune.spaces import ray_space

IMAGE = MultiStep.space("image")


def test_the_supplements_four_searchers_with_their_options_and_seeds():
    facts = {name: (s.title, s.options, s.seed_option, s.default_seed, s.space, s.trial_offset)
             for name, s in SEARCHERS.items()}
    assert facts == {
        "bayesopt": ("BayesOpt", {"random_state", "random_search_steps", "utility_kwargs", "patience",
                                  "skip_duplicate", "bayesopt_space", "max_concurrent"}, "random_state", 42,
                     "native", 0),
        "bohb": ("BOHB", {"seed", "bohb_config", "reduction_factor"}, "seed", 0, "native", 0),
        "random": ("random search", {"random_state"}, "random_state", 0, "native", 1),
        "grid": ("grid search", set(), None, None, "grid", 1),
    }
    assert dict(TITLES) == {n: s.title for n, s in SEARCHERS.items()}
    assert plan_module.SEARCHER_TITLES["bohb"] == "BOHB"  # the reports read titles from the plan


def test_builds_are_the_libraries_searchers():
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.bayesopt import BayesOptSearch

    from mlrsnet.paper.tune.bohb import ResumableTuneBOHB
    from mlrsnet.paper.tune.limiter import OrderedBatches
    from mlrsnet.paper.tune.searchers import BAYESOPT_MAX_CONCURRENT

    alg, sched = build_searcher("bayesopt", max_epochs=3)
    # BayesOpt in ordered batches (tests/paper/tune/test_limiter.py)
    assert isinstance(alg, OrderedBatches) and isinstance(alg.searcher, BayesOptSearch) and sched is None
    assert alg.max_concurrent == BAYESOPT_MAX_CONCURRENT == 2
    alg, sched = build_searcher("bohb", max_epochs=4, options={"seed": 1, "reduction_factor": 2})
    assert isinstance(alg, ResumableTuneBOHB) and isinstance(sched, HyperBandForBOHB)
    assert sched._max_t_attr == 4 and sched._eta == 2
    for name in ("random", "grid"):
        alg, sched = build_searcher(name, max_epochs=3)
        assert isinstance(alg, BasicVariantGenerator) and sched is None
    with pytest.raises(ValueError, match="unknown searcher"):
        build_searcher("hyperband", max_epochs=3)


def test_bohb_states_pickled_under_the_old_module_path_still_load():
    import pickle

    from mlrsnet.paper.tune.bohb import ResumableTuneBOHB

    assert pickle.loads(b"cmlrsnet.paper.tune.searchers\nResumableTuneBOHB\n.") is ResumableTuneBOHB


def test_an_entry_must_be_consistent():
    with pytest.raises(ValueError, match="space"):
        Searcher("x", "X", build=lambda o, e: (None, None), space="log2")
    with pytest.raises(ValueError, match="seed option"):
        Searcher("x", "X", build=lambda o, e: (None, None), seed_option="seed")
    with pytest.raises(ValueError, match="two searchers"):
        register(Searcher("grid", "another grid", build=lambda o, e: (None, None)))


def test_importing_the_registry_the_plan_and_the_cli_does_not_import_ray():
    code = ("import sys, mlrsnet.paper.tune.searchers, mlrsnet.paper.tune.plan, mlrsnet.paper.cli, "
            "mlrsnet.paper.tune.spaces; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a searcher added in one place --------------------------------------------------------
def _hyperopt(options, max_epochs):
    from ray.tune.search.hyperopt import HyperOptSearch

    return HyperOptSearch(**options), None


@pytest.fixture
def hyperopt():
    """Tree-structured Parzen estimators (hyperopt is installed with the bench extra),
    registered with nothing but a :class:`Searcher` entry."""
    entry = register(Searcher("hyperopt", "HyperOpt (TPE)", _hyperopt,
                              options=frozenset({"random_state_seed", "n_initial_points"}),
                              seed_option="random_state_seed"))
    yield entry
    del SEARCHERS["hyperopt"]


def test_a_registered_searcher_is_validated_by_the_plan(hyperopt):
    plan = parse_tune_block({"searchers": ["hyperopt", "bohb"],
                             "profiles": {"mini": {"samples": {"hyperopt": 5},
                                                   "hyperopt": {"random_state_seed": 3}}}})
    assert plan.searchers == ("hyperopt", "bohb")
    assert plan.samples_for("mini", "hyperopt", fallback=2) == 5
    assert plan.seed_for("mini", "hyperopt") == 3 and plan.seed_for("paper", "hyperopt") is None
    assert with_cli_overrides(plan, searchers="hyperopt").searchers == ("hyperopt",)
    with pytest.raises(UserError, match="tune.profiles.mini.hyperopt.seed"):
        parse_tune_block({"profiles": {"mini": {"hyperopt": {"seed": 1}}}}, "spec.toml")


def test_a_registered_searcher_is_in_the_cli_help(hyperopt, capsys):
    from mlrsnet.harness.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--help"])
    help_text = capsys.readouterr().out
    assert "bayesopt,bohb,random,grid,hyperopt" in " ".join(help_text.split())


def test_a_registered_searcher_is_built_with_its_space(hyperopt):
    from ray import tune
    from ray.tune.search.hyperopt import HyperOptSearch

    alg, sched = build_searcher("hyperopt", max_epochs=2, options={"random_state_seed": 3})
    assert isinstance(alg, HyperOptSearch) and sched is None
    space = ray_space(IMAGE, "hyperopt", budget=4)  # the native encoding: log-uniform as declared
    assert isinstance(space["lr"].get_sampler(), tune.search.sample.LogUniform)
    assert alg.set_search_properties("objective", "max", space)
    config = alg.suggest("1")
    assert 0.01 <= config["lr"] <= 0.5 and 0.01 <= config["decay"] <= 0.5


@pytest.mark.usefixtures("ray_local")
def test_a_registered_searcher_runs_a_search_end_to_end(hyperopt, data_dir, tmp_path, make_spec, tune_args):
    from mlrsnet.harness.store import Store
    from mlrsnet.paper.tune import tune_command

    spec = make_spec('tasks = ["resnet18-cifar10"]\n[tune]\nsearchers = ["hyperopt"]\n'
                     '[tune.profiles.smoke]\nsamples = 2\nhyperopt = { random_state_seed = 5 }\n')
    assert tune_command(tune_args(spec, tmp_path / "results", ["--cpus-per-trial", "2"])) == 0
    runs = Store(tmp_path / "results").runs("tunetest")
    trials = runs[runs["tags"].map(lambda t: "search_id" in t)]
    assert len(trials) == 2 and set(trials["status"]) == {"finished"}
    tags = trials["tags"].tolist()
    assert {(t["search"], t["searcher_seed"]) for t in tags} == {("hyperopt", 5)}
    assert sorted(t["trial"] for t in tags) == [1, 2]
    assert all(0.01 <= hp["lr"] <= 0.5 and 0.01 <= hp["decay"] <= 0.5 for hp in trials["hparams"])


# -- BOHB's brackets reach the full budget ------------------------------------------------
def _brackets(scheduler):
    """(initial trials, rungs) of each bracket the scheduler creates, largest first, from
    Ray's own arithmetic: HyperBandForBOHB fills bracket s = s_max .. 0, skipping those
    whose first rung rounds to 0 epochs, and each rung is the bracket's successive halving."""
    out = []
    for s in reversed(range(scheduler._s_max_1)):
        if scheduler._get_r0(s) == 0:
            continue
        bracket = scheduler._create_bracket(s)
        rungs = [bracket._cumul_r]
        while bracket._halves > 0:
            bracket.successive_halving("objective", 1.0)  # no trials: only the arithmetic
            rungs.append(bracket._cumul_r)
        out.append((bracket._n0, rungs))
    return out


@pytest.mark.parametrize("epochs", [2, 3, 4, 5, 150, 200])
def test_every_bohb_bracket_ends_at_the_full_budget(epochs):
    from ray.tune.schedulers import HyperBandForBOHB

    _, scheduler = build_searcher("bohb", max_epochs=epochs)
    assert isinstance(scheduler, HyperBandForBOHB) and scheduler._max_t_attr == epochs
    brackets = _brackets(scheduler)
    assert brackets and all(rungs[-1] == epochs for _, rungs in brackets), brackets
    if epochs >= 3:  # the largest bracket really stops trials early
        assert len(brackets[0][1]) >= 2 and brackets[0][1][0] < epochs


def test_the_documented_brackets():
    """docs/tuning.md states these (trials in the first bracket, its rungs in epochs)."""
    expect = {2: (3, [(2, [2])]), 3: (3, [(3, [1, 3]), (2, [3])]), 4: (4, [(4, [1, 4]), (2, [4])]),
              5: (5, [(5, [1, 5]), (2, [5])]), 150: (15, [(23, [10, 150]), (3, [150])]),
              200: (10, [(100, [2, 20, 200]), (15, [20, 200]), (3, [200])])}
    for epochs, (eta, brackets) in expect.items():
        _, scheduler = build_searcher("bohb", max_epochs=epochs)
        assert (scheduler._eta, _brackets(scheduler)) == (eta, brackets)


def test_a_reduction_factor_that_misses_the_full_budget_is_refused():
    with pytest.raises(UserError, match="reduction_factor 3 .* 200 epochs.* 162"):
        build_searcher("bohb", max_epochs=200, options={"reduction_factor": 3})
    _, scheduler = build_searcher("bohb", max_epochs=200, options={"reduction_factor": 20})
    assert scheduler._eta == 20 and {r[-1] for _, r in _brackets(scheduler)} == {200}


def test_a_trial_can_end_at_its_last_epoch_and_at_bohbs_rungs():
    from mlrsnet.paper.tune.searchers import hyperband_brackets, stop_epochs

    assert stop_epochs("bayesopt", {}, 10) == {10}
    assert stop_epochs("random", {}, 3) == {3}
    rungs = {r for _, bracket in hyperband_brackets(10, 5) for r in bracket}
    assert stop_epochs("bohb", {}, 10) == rungs | {10} == {2, 10}
    assert stop_epochs("bohb", {"reduction_factor": 2}, 4) == {1, 2, 4}
