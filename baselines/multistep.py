"""MultiStep decay, the schedule the paper tunes with BayesOpt/BOHB/random/grid search.

``alpha_t = alpha0 * gamma_M ** i`` (hyper-parameters ``lr`` = alpha0, ``decay`` = gamma_M) after the i-th decay.  Images: decays at 30/60/90 % of the
epochs (epochs 60/120/180 of 200 in the paper, "every 60 epochs").  Language models use
the paper's "Val" strategy instead: decay whenever the validation loss stops improving.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

from mlrsnet.harness.contract import HParam, StepInfo
from mlrsnet.harness.schedules import DECAY, DECAY_SPEC, IMAGE_LR, LR_SPEC, Schedule


class MultiStep(Schedule):
    name = "multistep"
    description = "step decay at fixed fractions of training (paper: epochs 60/120/180 of 200)"
    defaults = {"lr": None, "decay": 0.1, "milestones": (0.3, 0.6, 0.9)}
    search_space = {"lr": IMAGE_LR, "decay": DECAY}
    hparam_specs = {
        "lr": LR_SPEC,
        "decay": DECAY_SPEC,
        # fractions of the run, strictly increasing, inside (0, 1)
        "milestones": HParam("fractions", low=0.0, high=1.0, low_open=True, high_open=True),
    }

    def milestone_epochs(self) -> list[int]:
        assert self.run is not None
        return sorted(round(f * self.run.horizon.epochs) for f in self.hparams["milestones"])

    def factor(self, step: StepInfo) -> float:
        decays = bisect.bisect_right(self.milestone_epochs(), step.epoch)
        return float(self.hparams["decay"]) ** decays


class MultiStepVal(Schedule):
    """Decay by ``decay`` after each epoch whose validation loss is not a new best
    (``patience`` such epochs in a row), as in the word-language-model recipe.  Its counters
    are plain attributes, saved by the default ``state_dict``."""

    name = "multistep-val"
    uses_held_out = True  # images: the held-out loss is its plateau signal
    description = "step decay when the validation loss stops improving (paper's 'Val' strategy)"
    defaults = {"lr": None, "decay": 0.25, "patience": 0}
    search_space = {"lr": IMAGE_LR, "decay": DECAY}
    hparam_specs = {"lr": LR_SPEC, "decay": DECAY_SPEC, "patience": HParam("int", low=0)}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.decays = 0
        self.best = float("inf")
        self.bad_epochs = 0

    def factor(self, step: StepInfo) -> float:
        return float(self.hparams["decay"]) ** self.decays

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        val = metrics.get("val/loss")
        if val is None:
            return
        if val < self.best:
            self.best, self.bad_epochs = val, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.hparams["patience"]:
            self.decays += 1
            self.bad_epochs = 0
