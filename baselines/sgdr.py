"""SGDR: cosine annealing with warm restarts (Loshchilov & Hutter, ICLR 2017).

The first cycle lasts ``t0`` of the run (a fraction, so the schedule scales with the
profile's epochs), each later cycle ``t_mult`` times the previous one.
"""

from __future__ import annotations

from mlrsnet.baselines.cosine import cosine_factor

from mlrsnet.harness.contract import HParam, StepInfo
from mlrsnet.harness.schedules import IMAGE_LR, LR_SPEC, MIN_RATIO_SPEC, Schedule


class SGDR(Schedule):
    name = "sgdr"
    description = "cosine annealing with warm restarts"
    defaults = {"lr": None, "t0": 0.05, "t_mult": 2.0, "min_ratio": 0.0}
    search_space = {"lr": IMAGE_LR, "t0": ("choice", [0.05, 0.1, 0.2])}
    hparam_specs = {
        "lr": LR_SPEC,
        "t0": HParam("number", low=0.0, high=1.0, low_open=True),  # fraction of the run
        "t_mult": HParam("number", low=1.0),  # cycles never shrink
        "min_ratio": MIN_RATIO_SPEC,
    }

    def factor(self, step: StepInfo) -> float:
        cycle = max(1.0, float(self.hparams["t0"]) * self.total_steps)
        t = float(step.step)
        while t >= cycle:
            t -= cycle
            cycle *= float(self.hparams["t_mult"])
        return cosine_factor(t / cycle, float(self.hparams["min_ratio"]))
