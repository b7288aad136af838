"""A constant learning rate: the floor every schedule should beat."""

from __future__ import annotations

from mlrsnet.harness.contract import StepInfo
from mlrsnet.harness.schedules import IMAGE_LR, LR_SPEC, Schedule


class Fixed(Schedule):
    name = "fixed"
    description = "constant LR"
    defaults = {"lr": None}
    search_space = {"lr": IMAGE_LR}
    hparam_specs = {"lr": LR_SPEC}

    def factor(self, step: StepInfo) -> float:
        return 1.0
