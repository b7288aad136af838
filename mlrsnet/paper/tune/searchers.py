"""The four searchers of the supplement, built the way Ray Tune ships them.

- ``bayesopt``: ``BayesOptSearch`` (Gaussian process, UCB; its own default seed 42 and 10
  random warm-up trials unless the spec says otherwise);
- ``bohb``: ``TuneBOHB`` with the ``HyperBandForBOHB`` scheduler; the budget is the epoch
  (``time_attr="epoch"``, ``max_t`` = the profile's epochs), so weak configurations stop
  after a third of the epochs (reduction factor 3) and only the promising ones train fully;
- ``random``: Tune's ``BasicVariantGenerator`` sampling the log-uniform space;
- ``grid``: the same generator over ``tune.grid_search`` candidates.

Only options the spec gives are passed; everything else is the library's default, so a
search reproduces the searcher's own default behaviour (seeds included).  This module
imports Ray Tune: import it only where a search runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.tune.search.bohb import TuneBOHB


class ResumableTuneBOHB(TuneBOHB):
    """TuneBOHB that ignores trials it does not know.

    Tune saves the experiment's and the searcher's state separately; after an interrupted
    run the restored searcher can lag or lead the restored trials by a trial, and stock
    TuneBOHB then fails with a KeyError on such a trial's result.  Here the result is just
    not learned from (the trial still runs and is stored).  BayesOptSearch already
    tolerates this."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trial_to_params:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.trial_to_params:
            super().on_trial_complete(trial_id, result, error)
        self.paused.discard(trial_id)
        self.running.discard(trial_id)


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

        sched_opts = {k: opts.pop(k) for k in ("reduction_factor",) if k in opts}
        scheduler = HyperBandForBOHB(time_attr="epoch", max_t=max_epochs, **sched_opts)
        return ResumableTuneBOHB(**opts), scheduler
    if name in ("random", "grid"):
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(**opts), None
    raise ValueError(f"unknown searcher {name!r}")
