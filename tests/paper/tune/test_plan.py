"""The [tune] block of a spec: defaults, budgets per profile, searcher options, errors."""

from __future__ import annotations

import pytest

from mlrsnet.errors import UserError
from mlrsnet.harness.experiment import load_spec
from mlrsnet.paper.tune.plan import parse_tune_block, with_cli_overrides


def test_defaults_are_the_papers_searchers_objective_and_methods():
    plan = parse_tune_block({})
    assert plan.searchers == ("bayesopt", "bohb")
    assert plan.objective == "val"
    assert plan.method_for("image") == "multistep" and plan.method_for("text") == "multistep-val"


def test_samples_come_from_the_profile_table_else_from_the_task_profile():
    plan = parse_tune_block({"profiles": {"mini": {"samples": 4},
                                          "paper": {"samples": {"default": 30, "grid": 196}}}})
    assert plan.samples_for("mini", "bohb", fallback=8) == 4
    assert plan.samples_for("paper", "grid", fallback=8) == 196
    assert plan.samples_for("paper", "random", fallback=8) == 30
    assert plan.samples_for("smoke", "random", fallback=2) == 2


def test_searcher_seeds_default_to_the_librarys_own_else_0():
    plan = parse_tune_block({"profiles": {"mini": {"bohb": {"seed": 7}}}})
    assert plan.seed_for("mini", "bayesopt") == 42  # BayesOptSearch's fixed default
    assert plan.seed_for("mini", "random") == 0  # seeded (Tune leaves it unseeded)
    assert plan.seed_for("mini", "bohb") == 7
    assert plan.options_for("mini", "bohb") == {"seed": 7}
    assert plan.options_for("paper", "bohb") == {}


@pytest.mark.parametrize("block, key", [
    ({"searcher": ["bayesopt"]}, "tune.searcher"),
    ({"searchers": ["hyperband"]}, "tune.searchers"),
    ({"objective": "train"}, "tune.objective"),
    ({"method": {"image": "nope"}}, "tune.method.image"),
    ({"method": "mlrsnet-transfer"}, "tune.method.image"),  # declares no search space
    ({"space": {"lr": ["loguniform", 0, 1]}}, "tune.space.lr"),
    ({"profiles": {"huge": {"samples": 3}}}, "tune.profiles.huge"),
    ({"profiles": {"mini": {"samples": 0}}}, "tune.profiles.mini.samples.default"),
    ({"profiles": {"mini": {"bayesopt": {"seed": 1}}}}, "tune.profiles.mini.bayesopt.seed"),
    ({"transfer_to": ["nowhere"]}, "tune.transfer_to"),
])
def test_mistakes_name_the_file_and_the_key(block, key):
    with pytest.raises(UserError) as err:
        parse_tune_block(block, "spec.toml")
    assert f"spec.toml: key {key!r}" in str(err.value)


def test_command_line_overrides_searchers_and_objective():
    plan = with_cli_overrides(parse_tune_block({}), searchers="random,grid", objective="test")
    assert plan.searchers == ("random", "grid") and plan.objective == "test"
    with pytest.raises(UserError, match="--searchers"):
        with_cli_overrides(plan, searchers="bayes")


def test_shipped_specs_validate():
    for name in ("table1", "transfer"):
        spec = load_spec(f"benchmarks/{name}.toml")
        plan = parse_tune_block(spec.tune, name)
        assert {"bayesopt", "bohb"} <= set(plan.searchers)
    table1 = load_spec("benchmarks/table1.toml")
    assert len(table1.tasks) == 9  # the nine settings of the supplement's Table 1
