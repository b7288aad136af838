"""Cosine annealing (Loshchilov & Hutter) over the whole run, stepped per iteration."""

from __future__ import annotations

import math

from mlrsnet.harness.contract import StepInfo
from mlrsnet.harness.schedules import IMAGE_LR, LR_SPEC, MIN_RATIO_SPEC, Schedule


def cosine_factor(t: float, floor: float) -> float:
    """Cosine from 1 to ``floor`` as ``t`` goes from 0 to 1."""
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


class Cosine(Schedule):
    name = "cosine"
    description = "cosine annealing to lr*min_ratio over all steps"
    defaults = {"lr": None, "min_ratio": 0.0}
    search_space = {"lr": IMAGE_LR}
    hparam_specs = {"lr": LR_SPEC, "min_ratio": MIN_RATIO_SPEC}

    def factor(self, step: StepInfo) -> float:
        return cosine_factor(step.step / self.total_steps, float(self.hparams["min_ratio"]))
