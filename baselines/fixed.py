"""A constant learning rate: the floor every schedule should beat."""

from __future__ import annotations

from baselines._schedule import IMAGE_LR, LR_SPEC, ProgressSchedule
from mlrsnet.harness.contract import StepInfo


class Fixed(ProgressSchedule):
    name = "fixed"
    description = "constant LR"
    defaults = {"lr": None}
    search_space = {"lr": IMAGE_LR}
    hparam_specs = {"lr": LR_SPEC}

    def factor(self, step: StepInfo) -> float:
        return 1.0
