"""The four searchers of the supplement, built the way Ray Tune ships them.

- ``bayesopt``: ``BayesOptSearch`` (Gaussian process, UCB; its own default seed 42 and 10
  random warm-up trials unless the spec says otherwise);
- ``bohb``: ``TuneBOHB`` with the ``HyperBandForBOHB`` scheduler; the budget is the epoch
  (``time_attr="epoch"``, ``max_t`` = the profile's epochs), so weak configurations stop
  after a third of the epochs (reduction factor 3) and only the promising ones train fully;
- ``random``: Tune's ``BasicVariantGenerator`` sampling the log-uniform space;
- ``grid``: the same generator over ``tune.grid_search`` candidates.

Only options the spec gives are passed; everything else is the library's default, so a
search reproduces the searcher's own default behaviour (seeds included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def build_searcher(name: str, *, max_epochs: int,
                   options: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """``(search_alg, scheduler)`` for ``TuneConfig``; the scheduler is ``None`` except for BOHB.

    Metric and mode are left to ``TuneConfig`` (Tune refuses them twice)."""
    opts = dict(options or {})
    if name == "bayesopt":
        from ray.tune.search.bayesopt import BayesOptSearch

        return BayesOptSearch(**opts), None
    if name == "bohb":
        from ray.tune.schedulers import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB

        sched_opts = {k: opts.pop(k) for k in ("reduction_factor",) if k in opts}
        scheduler = HyperBandForBOHB(time_attr="epoch", max_t=max_epochs, **sched_opts)
        return TuneBOHB(**opts), scheduler
    if name in ("random", "grid"):
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(**opts), None
    raise ValueError(f"unknown searcher {name!r}")
