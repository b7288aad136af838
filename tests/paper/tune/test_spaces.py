"""Search spaces per searcher: log-uniform where the paper says so, the paper's grid."""

from __future__ import annotations

import math

import pytest
from mlrsnet.baselines.multistep import MultiStep, MultiStepVal
from ray import tune

from mlrsnet.errors import UserError
from mlrsnet.paper.tune.spaces import (
    PAPER_GRID,
    centred_pick,
    decode,
    grid_candidates,
    grid_shape,
    grid_subset,
    ray_space,
    resolve_space,
)

IMAGE = MultiStep.space("image")
TEXT = MultiStepVal.space("text")


def test_method_spaces_are_the_papers_ranges():
    assert IMAGE == {"lr": ("loguniform", 1e-2, 5e-1), "decay": ("loguniform", 1e-2, 5e-1)}
    assert TEXT["lr"] == ("loguniform", 1e-2, 20.0)


def test_random_and_bohb_sample_log_uniformly():
    for searcher in ("random", "bohb"):
        space = ray_space(IMAGE, searcher, budget=4)
        assert isinstance(space["lr"].get_sampler(), tune.search.sample.LogUniform)
        assert (space["lr"].lower, space["lr"].upper) == (1e-2, 5e-1)


def test_bayesopt_with_the_log10_option_searches_log10_uniformly_and_decodes_back():
    space = ray_space(TEXT, "bayesopt", budget=4, options={"bayesopt_space": "log10"})
    assert set(space) == {"log10_lr", "log10_decay"}
    assert (space["log10_lr"].lower, space["log10_lr"].upper) == pytest.approx((-2.0, math.log10(20)))
    hp = decode({"log10_lr": math.log10(8.5), "log10_decay": -1.0}, TEXT)
    assert hp == pytest.approx({"lr": 8.5, "decay": 0.1})


def test_grid_uses_the_papers_14_candidates_and_the_whole_grid_when_the_budget_allows():
    candidates = grid_candidates(IMAGE, {})
    assert candidates["lr"] == tuple(PAPER_GRID) and len(PAPER_GRID) == 14
    full = grid_subset(candidates, 196)
    assert full == {"lr": PAPER_GRID, "decay": PAPER_GRID}


@pytest.mark.parametrize("budget, shape", [(1, [1, 1]), (2, [2, 1]), (4, [2, 2]), (8, [4, 2]),
                                           (30, [6, 5]), (196, [14, 14]), (500, [14, 14])])
def test_a_smaller_budget_takes_the_largest_balanced_sub_grid(budget, shape):
    assert grid_shape([14, 14], budget) == shape


def test_sub_grid_points_are_centred_in_the_candidate_list():
    assert centred_pick(PAPER_GRID, 1) == [0.08]
    assert centred_pick(PAPER_GRID, 2) == [0.04, 0.2]
    assert centred_pick(PAPER_GRID, 4) == [0.02, 0.06, 0.09, 0.4]
    space = ray_space(IMAGE, "grid", budget=4)
    assert space["lr"] == {"grid_search": [0.04, 0.2]}


def test_spec_space_may_only_replace_the_methods_hyper_parameters():
    space = resolve_space(IMAGE, {"lr": ("loguniform", 1e3, 1e4)}, list(MultiStep.defaults))
    assert space["lr"] == ("loguniform", 1e3, 1e4) and space["decay"] == IMAGE["decay"]
    with pytest.raises(UserError, match="no such hyper-parameter"):
        resolve_space(IMAGE, {"momentum": ("uniform", 0, 1)}, list(MultiStep.defaults))
    with pytest.raises(UserError, match="no paper grid value"):
        grid_candidates({"lr": ("loguniform", 1e3, 1e4)}, {})
