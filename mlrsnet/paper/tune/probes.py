"""The configurations a seeded searcher tries before it has learned anything.

BayesOptSearch suggests ``random_search_steps`` (10 by default) random points before its
Gaussian process sees a result: bayes_opt's ``random_sample`` over the bounds, the dimensions
in the sorted order of their names, drawn from ``RandomState(random_state)`` (42 unless the
spec seeds it).  These probes depend only on the space, the names and the seed, so they can
be listed without training, and a reported optimum that equals one of them was found by the
random warm-up, not by the model.  The supplement's BayesOpt value for ResNet-18/CIFAR-10
(0.0864373, 0.0864491) is the third probe of Ray's default seed on the paper's bounds
searched uniformly (its log-uniform sampler dropped), with the decay factor's name sorting
before the LR's.

The probes are computed through the same path a search takes (the suite's
:func:`~mlrsnet.paper.tune.spaces.ray_space`, Ray's ``BayesOptSearch.suggest`` and
:func:`~mlrsnet.paper.tune.spaces.decode`), so they are the hyper-parameters the first trials
of a default-seed search store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from mlrsnet.paper.tune.searchers import get_searcher
from mlrsnet.paper.tune.spaces import decode, ray_space

#: Ray's BayesOptSearch default number of random warm-up suggestions.
BAYESOPT_RANDOM_STEPS = 10


def initial_probes(space: Mapping[str, tuple], *, seed: int | None = None, count: int = BAYESOPT_RANDOM_STEPS,
                   options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The first ``count`` BayesOpt suggestions for the method's ``space`` (``seed``: the
    searcher's default when ``None``), as method hyper-parameters."""
    from ray.tune.search.bayesopt import BayesOptSearch

    entry = get_searcher("bayesopt")
    opts = dict(options or {})
    seed = entry.default_seed if seed is None else seed
    param_space = ray_space(space, "bayesopt", budget=count, options=opts)
    ray_logger = logging.getLogger("ray.tune.search.bayesopt.bayesopt_search")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)  # "the LogUniform sampler will be dropped": known, intended
    try:
        search = BayesOptSearch(space=param_space, metric="objective", mode="max", random_state=seed,
                                **entry.library_options(opts))
        return [decode(search.suggest(f"probe{k}"), space) for k in range(count)]
    finally:
        ray_logger.setLevel(level)


def matching_probe(values: Mapping[str, float], probes: list[Mapping[str, Any]], *,
                   rel: float = 1e-6) -> int | None:
    """1-based index of the probe equal to ``values`` (every name, to ``rel``), else None."""
    for k, probe in enumerate(probes, 1):
        if all(name in probe and math.isclose(float(probe[name]), float(v), rel_tol=rel)
               for name, v in values.items()):
            return k
    return None
