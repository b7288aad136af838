"""BOHB's search algorithm, made safe to resume.  Imports Ray Tune (and hpbandster): only
:func:`mlrsnet.paper.tune.searchers._bohb` imports this module, when a BOHB search starts."""

from __future__ import annotations

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
