"""Exponential decay per epoch: ``lr * decay ** epoch``."""

from __future__ import annotations

from mlrsnet.harness.contract import StepInfo
from mlrsnet.harness.schedules import DECAY_SPEC, IMAGE_LR, LR_SPEC, Schedule


class Exponential(Schedule):
    name = "exponential"
    description = "LR multiplied by decay every epoch"
    defaults = {"lr": None, "decay": 0.97}
    search_space = {"lr": IMAGE_LR, "decay": ("uniform", 0.8, 0.999)}
    hparam_specs = {"lr": LR_SPEC, "decay": DECAY_SPEC}

    def factor(self, step: StepInfo) -> float:
        return float(self.hparams["decay"]) ** step.epoch
