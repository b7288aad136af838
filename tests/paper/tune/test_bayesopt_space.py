"""BayesOpt as the paper ran it: the declared log-uniform space handed to Ray as is (Ray then
searches the bounds uniformly), log10 as a named option; and the paper's Table 1 values that
are BayesOpt's default-seed random probes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from mlrsnet.baselines.multistep import MultiStep

from mlrsnet.errors import UserError
from mlrsnet.paper.report.table1 import paper_probe
from mlrsnet.paper.tune.probes import initial_probes, matching_probe
from mlrsnet.paper.tune.spaces import ray_space

PAPER_TABLE1 = Path(__file__).resolve().parents[3] / "benchmarks" / "reference" / "paper_table1.csv"
IMAGE = MultiStep.space("image")


def paper_row(task: str, searcher: str) -> dict[str, float]:
    with PAPER_TABLE1.open() as fh:
        for row in csv.DictReader(fh):
            if row["task"] == task and row["searcher"] == searcher:
                return {"lr": float(row["alpha0"]), "decay": float(row["gamma"])}
    raise AssertionError(f"no paper row for {task}/{searcher}")


def test_bayesopt_gets_the_declared_log_uniform_space_by_default_and_log10_on_request() -> None:
    from ray.tune.search.bayesopt import BayesOptSearch
    from ray.tune.search.sample import LogUniform

    native = ray_space(IMAGE, "bayesopt", budget=8)
    assert set(native) == {"lr", "decay"}
    assert all(isinstance(d.get_sampler(), LogUniform) for d in native.values())
    # ... which Ray's BayesOptSearch turns into plain linear bounds
    assert BayesOptSearch.convert_search_space(native) == {"decay": (0.01, 0.5), "lr": (0.01, 0.5)}
    log10 = ray_space(IMAGE, "bayesopt", budget=8, options={"bayesopt_space": "log10"})
    assert set(log10) == {"log10_lr", "log10_decay"}
    assert (log10["log10_lr"].lower, log10["log10_lr"].upper) == pytest.approx((-2.0, math.log10(0.5)))
    with pytest.raises(UserError, match="bayesopt_space must be one of native, log10"):
        ray_space(IMAGE, "bayesopt", budget=8, options={"bayesopt_space": "log2"})


def test_the_probes_are_uniform_draws_over_the_bounds_in_sorted_name_order() -> None:
    # Re-derived: bayes_opt draws RandomState(42).uniform(low, high) per dimension, the
    # dimensions sorted by name (decay before lr), point after point.
    import numpy as np

    rng = np.random.RandomState(42)
    expected = []
    for _ in range(4):
        decay, lr = rng.uniform(0.01, 0.5), rng.uniform(0.01, 0.5)
        expected.append({"decay": decay, "lr": lr})
    got = initial_probes(IMAGE, count=4)
    for e, g in zip(expected, got, strict=True):
        assert g == pytest.approx(e, rel=1e-12)


def test_the_resnet18_cifar10_paper_value_is_the_third_default_seed_probe() -> None:
    probes = initial_probes(IMAGE)
    assert matching_probe(paper_row("resnet18-cifar10", "bayesopt"), probes) == 3
    # with the log10 encoding the same seed tries other points: the paper's is not among them
    assert matching_probe(paper_row("resnet18-cifar10", "bayesopt"),
                          initial_probes(IMAGE, options={"bayesopt_space": "log10"})) is None


def test_the_table1_report_names_each_probe_and_nothing_else() -> None:
    assert paper_probe("resnet18-cifar10", "bayesopt", **_ag(paper_row("resnet18-cifar10", "bayesopt"))) == 3
    assert paper_probe("lstm3-ptb", "bayesopt", **_ag(paper_row("lstm3-ptb", "bayesopt"))) == 1
    assert paper_probe("wrn28_10-cifar100", "bayesopt", **_ag(paper_row("wrn28_10-cifar100", "bayesopt"))) is None
    assert paper_probe("resnet18-cifar10", "bohb", **_ag(paper_row("resnet18-cifar10", "bohb"))) is None


def _ag(values: dict[str, float]) -> dict[str, float]:
    return {"alpha0": values["lr"], "gamma": values["decay"]}
