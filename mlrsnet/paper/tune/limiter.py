"""A concurrency limit that makes a model-based search's path independent of the hardware.

BayesOptSearch suggests each trial from the results registered so far.  Without a limit,
how many trials run at once (the number of GPUs or cores) decides how many results each
suggestion sees, so the search path, and Table 1, change with the machine.  Here the
searcher works in *batches* of ``max_concurrent`` trials: it suggests a batch, waits until
every trial of it has ended, then learns their results in the order they were suggested
(not the order they finished) and suggests the next batch.  A machine with fewer slots runs
a batch in turns, one with more leaves the rest idle; the suggestions are the same.

Imports Ray Tune: only :func:`mlrsnet.paper.tune.searchers._bayesopt` imports this module,
when a BayesOpt search starts.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher


class OrderedBatches(ConcurrencyLimiter):
    """``ConcurrencyLimiter(batch=True)`` that hands a finished batch to the searcher in the
    order its trials were suggested, and saves its own state with the searcher's (stock
    ConcurrencyLimiter saves only the searcher's, so a restored search forgot its batch)."""

    def __init__(self, searcher: Searcher, max_concurrent: int) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent, batch=True)
        self.order: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict | None:
        suggestion = super().suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.order[trial_id] = len(self.order)
        return suggestion

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._limit_concurrency or trial_id not in self.live_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        self.cached_results[trial_id] = (result, error)
        self.num_unfinished_live_trials -= 1
        if self.num_unfinished_live_trials > 0:
            return None
        for done in sorted(self.cached_results, key=lambda t: self.order.get(t, len(self.order))):
            res, err = self.cached_results[done]
            self.searcher.on_trial_complete(done, result=res, error=err)
            self.live_trials.discard(done)
        self.cached_results = {}
        self.num_unfinished_live_trials = 0
        return None

    def save(self, checkpoint_path: str) -> None:
        fd, inner = tempfile.mkstemp(dir=os.path.dirname(checkpoint_path) or ".")
        os.close(fd)
        try:
            self.searcher.save(inner)
            with open(inner, "rb") as f:
                searcher_state = f.read()
        finally:
            os.unlink(inner)
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"ordered_batches": self.get_state(), "searcher": searcher_state}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved: Any = pickle.load(f)  # noqa: S301 - Tune's own searcher state file
        if not (isinstance(saved, dict) and "ordered_batches" in saved):
            self.searcher.restore(checkpoint_path)
            return
        fd, inner = tempfile.mkstemp(dir=os.path.dirname(checkpoint_path) or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(saved["searcher"])
            self.searcher.restore(inner)
        finally:
            os.unlink(inner)
        self.set_state(saved["ordered_batches"])
