"""What a search optimises, and what a trial reports to Ray Tune each epoch.

The objective is the held-out validation metric of the training split by default
(accuracy for images, maximised; perplexity for language models, minimised); ``test``
tunes on the test metric instead, to reproduce that practice for comparison.

A diverged trial (NaN/inf loss) must steer the searcher away, not crash it, and a
Gaussian process cannot take NaN or inf.  It is therefore reported as the *worst* value:
accuracy 0 for images; for language models the perplexity of guessing uniformly over the
vocabulary (what an untrained model scores).  Perplexities above that are clipped to it in
the ``objective`` key, so a diverged trial ties with the worst finite ones rather than
looking better than them; the raw metrics are reported unclipped beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OBJECTIVE_KEY = "objective"


@dataclass(frozen=True)
class Objective:
    split: str  # "val" | "test"
    metric: str  # "acc" | "ppl"
    mode: str  # "max" | "min"
    worst: float

    @property
    def key(self) -> str:
        """The metric's name in the ``epochs`` table and in ``on_epoch``: ``val/acc``..."""
        return f"{self.split}/{self.metric}"

    def value(self, metrics: Mapping[str, float]) -> float:
        """The searcher's value for one epoch's metrics: worst if missing or not finite,
        and never worse than :attr:`worst`."""
        raw = metrics.get(self.key)
        if raw is None or not math.isfinite(raw):
            return self.worst
        return max(raw, self.worst) if self.mode == "max" else min(raw, self.worst)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b


def objective_for(kind: str, split: str, vocab_size: int | None = None) -> Objective:
    """The objective of a task kind ("image"/"text") on ``split`` ("val"/"test")."""
    if kind == "image":
        return Objective(split, "acc", "max", 0.0)
    if vocab_size is None or vocab_size < 2:
        raise ValueError("a language-model objective needs the vocabulary size")
    return Objective(split, "ppl", "min", float(vocab_size))


def tune_key(name: str) -> str:
    """Ray Tune flattens nested results on '/', so report ``val/acc`` as ``val_acc``."""
    return name.replace("/", "_")


def epoch_report(epoch: int, metrics: Mapping[str, float], objective: Objective,
                 run_id: str) -> dict[str, Any]:
    """One epoch's result for ``tune.report``: the objective, the epoch (BOHB's budget) and
    every metric of the loop."""
    out: dict[str, Any] = {tune_key(k): float(v) for k, v in metrics.items()}
    out.update({OBJECTIVE_KEY: objective.value(metrics), "epoch": int(epoch), "run_id": run_id,
                "diverged": False})
    return out


def diverged_report(epoch: int, objective: Objective, run_id: str) -> dict[str, Any]:
    """The final result of a trial whose loss became NaN/inf during ``epoch``."""
    return {OBJECTIVE_KEY: objective.worst, "epoch": int(epoch), "run_id": run_id, "diverged": True}
