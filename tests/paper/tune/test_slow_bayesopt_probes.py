"""BayesOpt's probes, many of them, through the suite's own path (registry build, space
encoding, trial decoding) against the real library, on a synthetic objective.

The claim of :mod:`mlrsnet.paper.tune.spaces` for the named option ``bayesopt_space =
"log10"`` (the default hands the paper's space to Ray as is, as the paper ran it, and Ray then
searches the bounds uniformly): BayesOptSearch drops log-uniform priors, so the option
searches ``log10`` of each log-uniform dimension; its random warm-up is then log-uniform and
its Gaussian process models the objective over the log scale.  Slow (hundreds of probes and a
GP fit per probe): ``make test-slow``.
"""

from __future__ import annotations

import math

import pytest
from mlrsnet.baselines.multistep import MultiStep

from mlrsnet.paper.tune.searchers import SEARCHERS, build_searcher
from mlrsnet.paper.tune.spaces import decode, ray_space

pytestmark = pytest.mark.slow

SPACE = MultiStep.space("image")  # lr, decay: log-uniform on [0.01, 0.5], as in the paper
#: Near the lower edge of lr: a search over the linear scale seldom probes there (the lowest
#: decade-fifth, [0.01, 0.0158], is 1.2 % of the linear range and 12 % of the log range).
OPTIMUM = {"lr": 0.012, "decay": 0.3}


def objective(hp: dict[str, float]) -> float:
    """Peaked at :data:`OPTIMUM`, symmetric in decades."""
    return -sum((math.log10(hp[k]) - math.log10(v)) ** 2 for k, v in OPTIMUM.items())


LOG10 = {"bayesopt_space": "log10"}


def searcher(options: dict | None = None):
    options = {**LOG10, **(options or {})}
    alg, scheduler = build_searcher("bayesopt", max_epochs=2, options=options)
    assert scheduler is None
    assert alg.set_search_properties("objective", "max",
                                     ray_space(SPACE, "bayesopt", budget=40, options=options))
    return alg


def probe(alg, n: int, start: int = 0) -> list[dict[str, float]]:
    """``n`` suggest/complete rounds, as Tune drives a searcher; the decoded hyper-parameters."""
    out = []
    for i in range(start, start + n):
        hp = decode(alg.suggest(str(i)), SPACE)
        alg.on_trial_complete(str(i), {"objective": objective(hp)})
        out.append(hp)
    return out


def test_the_registry_builds_bayesopt_over_the_log10_encoding_on_request():
    assert SEARCHERS["bayesopt"].space == "native"  # the paper's way, by default
    assert set(ray_space(SPACE, "bayesopt", budget=4, options=LOG10)) == {"log10_lr", "log10_decay"}


def test_the_random_warm_up_is_log_uniform_over_the_declared_range():
    below = total = 0
    for seed in range(50):
        for hp in probe(searcher({"random_state": seed, "random_search_steps": 10}), 10):
            for name, (_, lo, hi) in SPACE.items():
                assert lo <= hp[name] <= hi
                below += hp[name] < math.sqrt(lo * hi)  # the log scale's midpoint
                total += 1
    # log-uniform: half the probes below the geometric midpoint (linear-uniform: 12 %)
    assert 0.4 < below / total < 0.6, f"{below} of {total} probes below the log midpoint"


@pytest.mark.parametrize("seed", [None, 0, 1, 2, 3, 4, 5, 6])  # None: the library's default seed (42)
def test_the_gaussian_process_closes_in_on_the_optimum_in_log_space(seed):
    options = {} if seed is None else {"random_state": seed}
    hps = probe(searcher(options), 40)
    best = max(hps, key=objective)
    for name, value in OPTIMUM.items():
        assert abs(math.log10(best[name] / value)) < 0.1, (name, best)
    # after the 10 warm-up probes the search stays near the optimum, not spread over the range
    guided = hps[20:]
    assert sum(abs(math.log10(hp["lr"] / OPTIMUM["lr"])) < 0.2 for hp in guided) >= 16


def test_a_saved_and_restored_searcher_suggests_what_the_original_would(tmp_path):
    """What resuming a search relies on: the GP's observations come back with the searcher."""
    original = searcher()
    probe(original, 15)
    path = str(tmp_path / "bayesopt.pkl")
    original.save(path)
    restored = searcher()
    restored.restore(path)
    assert probe(restored, 3, start=15) == probe(original, 3, start=15)
