"""A one-line progress display for a search: trials done / total, best so far, ETA.

Ray Tune's own table is switched off (it is wide and repeats every few seconds); this
callback prints a line when a trial ends and at most every ``interval_s`` otherwise.  The
ETA counts epochs, not trials, so BOHB's early stops shorten it as they happen.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune import Callback

from mlrsnet.paper.tune.objective import OBJECTIVE_KEY, Objective
from mlrsnet.paper.tune.spaces import decode


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def format_metric(objective: Objective, value: float) -> str:
    return f"{value * 100:.2f}%" if objective.metric == "acc" else f"{value:.1f}"


def format_hparams(hparams: Mapping[str, Any]) -> str:
    """``lr=0.08644, decay=0.1114`` (the learning rate first, then by name)."""
    keys = sorted(hparams, key=lambda k: (k != "lr", k))
    return ", ".join(f"{k}={hparams[k]:.4g}" if isinstance(hparams[k], float) else f"{k}={hparams[k]}"
                     for k in keys)


def remaining_epochs(trials: Sequence[Any], total_trials: int, max_epochs: int) -> int:
    """Epochs still to train: unfinished trials' rest plus trials not yet created."""
    left = 0
    for t in trials:
        if t.status in ("TERMINATED", "ERROR"):
            continue
        done = int((t.last_result or {}).get("epoch", 0) or 0)
        left += max(0, max_epochs - done)
    return left + max(0, total_trials - len(trials)) * max_epochs


class SearchProgress(Callback):
    """Prints ``[label] trials 3/8 done, 2 running | best val acc 41.20% (lr=.., decay=..)
    | elapsed 2m10s, ETA 3m05s``."""

    def __init__(self, label: str, total_trials: int, max_epochs: int, objective: Objective,
                 space: Mapping[str, tuple], *, quiet: bool = False, interval_s: float = 20.0) -> None:
        self.label = label
        self.total_trials = total_trials
        self.max_epochs = max_epochs
        self.objective = objective
        self.space = dict(space)
        self.quiet = quiet
        self.interval_s = interval_s
        self._reset()

    def _reset(self) -> None:
        self._start = time.monotonic()
        self._epochs = 0
        self._last_print = 0.0

    def setup(self, **info: Any) -> None:  # a restored search starts a fresh session
        self._reset()

    # -- Tune hooks ---------------------------------------------------------------------------
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._epochs += 1
        if time.monotonic() - self._last_print >= self.interval_s:
            self._print(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials, ending=trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._emit(f"[{self.label}] trial {trial.trial_id} FAILED (see {trial.path or 'its trial folder'})")
        self._print(trials, ending=trial)

    # -- formatting ----------------------------------------------------------------------------
    def best(self, trials: Sequence[Any]) -> tuple[float, dict[str, Any]] | None:
        """Best objective among trials that trained the full budget (else among all)."""
        scored = [(t.last_result[OBJECTIVE_KEY], t) for t in trials
                  if t.last_result and OBJECTIVE_KEY in t.last_result]
        full = [(v, t) for v, t in scored if t.last_result.get("epoch", 0) >= self.max_epochs
                and not t.last_result.get("diverged")]
        pool = full or scored
        if not pool:
            return None
        value, trial = (max if self.objective.mode == "max" else min)(pool, key=lambda vt: vt[0])
        return float(value), decode(trial.config, self.space)

    def line(self, trials: Sequence[Any], ending: Any = None) -> str:
        """``ending``: a trial Tune is finishing right now (its status is not updated yet)."""
        ended = [t is ending or t.status in ("TERMINATED", "ERROR") for t in trials]
        done = sum(ended)
        running = sum(t.status == "RUNNING" and not e for t, e in zip(trials, ended, strict=True))
        elapsed = time.monotonic() - self._start
        left = remaining_epochs([t for t in trials if t is not ending], self.total_trials - (ending is not None),
                                self.max_epochs)
        eta = 0.0 if left == 0 else (elapsed / self._epochs * left if self._epochs else None)
        parts = [f"[{self.label}] trials {done}/{self.total_trials} done, {running} running"]
        best = self.best(trials)
        if best is not None:
            parts.append(f"best {self.objective.split} {self.objective.metric} "
                         f"{format_metric(self.objective, best[0])} ({format_hparams(best[1])})")
        parts.append(f"elapsed {format_duration(elapsed)}, ETA {format_duration(eta)}")
        return " | ".join(parts)

    def _print(self, trials: Sequence[Any], ending: Any = None) -> None:
        self._last_print = time.monotonic()
        self._emit(self.line(trials, ending))

    def _emit(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)
