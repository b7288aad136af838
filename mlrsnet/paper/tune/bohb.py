"""BOHB's search algorithm, made safe to resume and reproducible.  Imports Ray Tune (and
hpbandster): only :func:`mlrsnet.paper.tune.searchers._bohb` imports this module, when a
BOHB search starts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from ray.tune.search.bohb import TuneBOHB


class ResumableTuneBOHB(TuneBOHB):
    """TuneBOHB that ignores trials it does not know, and draws from its own seeded generator.

    Tune saves the experiment's and the searcher's state separately; after an interrupted
    run the restored searcher can lag or lead the restored trials by a trial, and stock
    TuneBOHB then fails with a KeyError on such a trial's result.  Here the result is just
    not learned from (the trial still runs and is stored).  BayesOptSearch already
    tolerates this.

    ``seed`` seeds the configuration space (as in TuneBOHB) *and* the draws hpbandster's
    BOHB makes from numpy's global generator (its random fraction, the KDE's samples and
    imputations): those run here with a generator of the searcher's own, seeded with
    ``seed`` and saved with the searcher, so one seed gives one sequence of configurations
    (for the same order of results; one trial at a time makes that order fixed) whatever
    else the process draws."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._draws = np.random.RandomState(self._seed)

    @contextlib.contextmanager
    def _own_draws(self) -> Iterator[None]:
        draws = getattr(self, "_draws", None)
        if draws is None:  # a state saved before the searcher had its own generator
            draws = self._draws = np.random.RandomState(self._seed)
        outside = np.random.get_state()
        np.random.set_state(draws.get_state())
        try:
            yield
        finally:
            draws.set_state(np.random.get_state())
            np.random.set_state(outside)

    def suggest(self, trial_id: str) -> dict | None:
        with self._own_draws():
            return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.trial_to_params:
            with self._own_draws():
                super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.trial_to_params:
            with self._own_draws():
                super().on_trial_complete(trial_id, result, error)
        self.paused.discard(trial_id)
        self.running.discard(trial_id)
