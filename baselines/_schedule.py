"""Shared base of the hand-designed schedules: an LR that is a pure function of progress.

A pure function of (step, epoch) needs no state, so resuming is exact for free.
"""

from __future__ import annotations

from mlrsnet.harness.contract import HParam, Method, StepInfo

#: The paper's search ranges for MultiStep-like schedules (PAPER_FACTS.md, supplement Sec. 2):
#: log-uniform alpha0 and decay factor.
IMAGE_LR = ("loguniform", 1e-2, 5e-1)
TEXT_LR = ("loguniform", 1e-2, 20.0)
DECAY = ("loguniform", 1e-2, 5e-1)
#: The paper's grid-search candidates for both alpha0 and gamma_M (Sec. 5).
PAPER_GRID = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.2, 0.3, 0.4, 0.5]

#: ``lr``: a positive number, or None for the task's base LR.
LR_SPEC = HParam("number", low=0.0, low_open=True, allow_none=True)
#: A decay factor: multiplies the LR, so in (0, 1] (1: no decay).
DECAY_SPEC = HParam("number", low=0.0, high=1.0, low_open=True)
#: The LR floor of cosine-like schedules, as a fraction of ``lr``.
MIN_RATIO_SPEC = HParam("number", low=0.0, high=1.0)


class ProgressSchedule(Method):
    """``lr(step) = initial_lr * factor(step)``; subclasses define :meth:`factor`.

    The LR never depends on the loss (``reads_loss = False``), so a step of a schedule never
    waits for the device."""

    hparam_specs = {"lr": LR_SPEC}
    reads_loss = False

    def lr(self, step: StepInfo) -> float:
        return self.initial_lr() * self.factor(step)

    def factor(self, step: StepInfo) -> float:
        raise NotImplementedError

    @property
    def total_steps(self) -> int:
        assert self.run is not None, "bind() first"
        return self.run.steps_per_epoch * self.run.epochs

    @classmethod
    def space(cls, kind: str) -> dict:
        space = dict(cls.search_space)
        if "lr" in space:
            space["lr"] = TEXT_LR if kind == "text" else IMAGE_LR
        return space
