"""Public building blocks for schedule methods: :class:`Schedule` and :func:`from_torch`.

A *schedule* decides the LR from the run's progress alone, never from the loss.  Writing one
on :class:`Schedule` gets right, without further code, what a plain
:class:`~mlrsnet.harness.contract.Method` leaves to its author:

* the task's LR: ``lr = None`` (the default) means the task's base LR (0.1 on the image
  tasks, 20 on the language models), so one module serves both kinds;
* ``reads_loss = False``: a schedule's step never waits for the device to read the loss;
* a search space per task kind: ``lr`` is searched over the paper's image range or the
  language models' range (:data:`IMAGE_LR`, :data:`TEXT_LR`);
* resumable state: plain attributes (a counter a plateau rule keeps) are saved by default
  (:mod:`mlrsnet.harness.method_state`).

:func:`from_torch` turns any ``torch.optim.lr_scheduler`` scheduler into a method in one
line (``OneCycleLR``, ``CosineAnnealingWarmRestarts``, ``ReduceLROnPlateau``...), with the
torch scheduler's own ``state_dict`` as its resumable state.

The built-in hand-designed schedules (``baselines/fixed.py``, ``cosine.py``, ``multistep.py``,
``exponential.py``, ``sgdr.py``) are written on :class:`Schedule`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import HParam, Method, RunContext, SearchDim, StepInfo

#: The paper's search ranges for MultiStep-like schedules (PAPER_FACTS.md, supplement Sec. 2):
#: log-uniform initial LR and decay factor; the language models' LR range around their 20.
IMAGE_LR: SearchDim = ("loguniform", 1e-2, 5e-1)
TEXT_LR: SearchDim = ("loguniform", 1e-2, 20.0)
DECAY: SearchDim = ("loguniform", 1e-2, 5e-1)

#: ``lr``: a positive number, or None for the task's base LR.
LR_SPEC = HParam("number", low=0.0, low_open=True, allow_none=True)
#: A decay factor: multiplies the LR, so in (0, 1] (1: no decay).
DECAY_SPEC = HParam("number", low=0.0, high=1.0, low_open=True)
#: The LR floor of cosine-like schedules, as a fraction of ``lr``.
MIN_RATIO_SPEC = HParam("number", low=0.0, high=1.0)


class Schedule(Method):
    """``lr(step) = initial_lr * factor(step)``; a subclass defines :meth:`factor`.

    ``initial_lr`` is the ``lr`` hyper-parameter, or the task's base LR when it is ``None``
    (give ``defaults = {"lr": None, ...}``).  :attr:`total_steps` and
    ``self.run.horizon`` give the run's length; ``step.epoch`` / ``step.step`` its progress.
    A schedule that reacts to the held-out loss declares ``uses_held_out = True`` and reads
    ``metrics["val/loss"]`` in :meth:`end_epoch`; attributes it keeps are saved by default.
    """

    defaults: ClassVar[dict[str, Any]] = {"lr": None}
    hparam_specs: ClassVar[dict[str, HParam]] = {"lr": LR_SPEC}
    search_space: ClassVar[dict[str, SearchDim]] = {"lr": IMAGE_LR}
    reads_loss: ClassVar[bool] = False

    def lr(self, step: StepInfo) -> float:
        return self.initial_lr() * self.factor(step)

    def factor(self, step: StepInfo) -> float:
        """The LR relative to the initial one at ``step`` (1.0: unchanged)."""
        raise NotImplementedError(f"{type(self).__name__} must define factor(step)")

    @property
    def total_steps(self) -> int:
        assert self.run is not None, "bind() first"
        return self.run.horizon.total_steps

    @classmethod
    def space(cls, kind: str) -> dict[str, SearchDim]:
        """The declared space, with ``lr`` over the range of the task's kind."""
        return kind_space(cls, kind)


def kind_space(cls: type[Method], kind: str) -> dict[str, SearchDim]:
    """``cls``'s declared search space for a task kind, with ``lr`` over that kind's range
    (:data:`IMAGE_LR` / :data:`TEXT_LR`)."""
    space = dict(cls.search_spaces.get(kind, cls.search_space))
    if "lr" in space:
        space["lr"] = TEXT_LR if kind == "text" else IMAGE_LR
    return space


#: ``build(optimizer, run)``: the torch scheduler for a run, on the optimiser whose param
#: groups already start at the method's initial LR.
TorchBuilder = Callable[[torch.optim.Optimizer, RunContext], Any]


class TorchSchedule(Method):
    """A ``torch.optim.lr_scheduler`` scheduler as a method (made by :func:`from_torch`).

    The optimiser's groups start at ``initial_lr`` (the ``lr`` hyper-parameter or the task's
    base LR) before the torch scheduler is built, so ``StepLR``-style schedulers that scale
    the initial LR work as they do in a torch loop.  The LR of a step is the group-0 LR the
    torch scheduler has set; it is stepped as torch prescribes, after ``optimizer.step()``
    (``interval = "step"``) or at the end of every epoch (``"epoch"``).  A
    ``ReduceLROnPlateau`` is stepped once per epoch with the held-out loss (the method then
    declares ``uses_held_out``).  Its ``state_dict`` is the torch scheduler's.
    """

    build: ClassVar[TorchBuilder]
    interval: ClassVar[str] = "step"
    reads_loss: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {"lr": None}
    hparam_specs: ClassVar[dict[str, HParam]] = {"lr": LR_SPEC}
    search_space: ClassVar[dict[str, SearchDim]] = {"lr": IMAGE_LR}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.scheduler: Any = None

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        for group in run.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.initial_lr()
        self.scheduler = type(self).build(run.optimizer, run)

    def lr(self, step: StepInfo) -> float:
        assert self.run is not None, "bind() first"
        return float(self.run.optimizer.param_groups[0]["lr"])

    def after_step(self, step: StepInfo) -> None:
        if self.interval == "step":
            self.scheduler.step()

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metrics["val/loss"])
        elif self.interval == "epoch":
            self.scheduler.step()

    @classmethod
    def space(cls, kind: str) -> dict[str, SearchDim]:
        """The declared space, with ``lr`` over the range of the task's kind."""
        return kind_space(cls, kind)


def from_torch(name: str, build: TorchBuilder, *, interval: str = "step", description: str = "",
               defaults: Mapping[str, Any] | None = None,
               search_space: Mapping[str, SearchDim] | None = None,
               uses_held_out: bool = False) -> type[TorchSchedule]:
    """A method class named ``name`` that runs the torch scheduler ``build(optimizer, run)``
    makes; in a module of ``baselines/`` it registers like any method::

        OneCycle = from_torch("onecycle", lambda opt, run: OneCycleLR(
            opt, max_lr=opt.param_groups[0]["lr"], total_steps=run.horizon.total_steps))

    ``interval``: ``"step"`` (torch schedulers stepped per batch: ``OneCycleLR``,
    ``CyclicLR``) or ``"epoch"`` (``StepLR``, ``MultiStepLR``...).  ``defaults`` adds
    hyper-parameters (``self.hparams``; ``run`` is the
    :class:`~mlrsnet.harness.contract.RunContext`), ``search_space`` declares tunable ones.
    A ``ReduceLROnPlateau`` reads the held-out loss: pass ``uses_held_out=True``.
    """
    if interval not in ("step", "epoch"):
        raise UserError(f"from_torch({name!r}): interval must be 'step' or 'epoch', not {interval!r}")
    caller = inspect.currentframe()
    # the class belongs to the module that called from_torch, so the registry finds it there
    module = caller.f_back.f_globals.get("__name__", __name__) if caller and caller.f_back else __name__
    attrs: dict[str, Any] = {
        "name": name, "build": staticmethod(build), "interval": interval,
        "description": description or f"torch scheduler ({name})",
        "defaults": {"lr": None, **dict(defaults or {})},
        "search_space": dict(search_space or {"lr": IMAGE_LR}),
        "uses_held_out": uses_held_out,
        "__module__": module,
        "__doc__": f"Method {name!r}: a torch LR scheduler run through :func:`mlrsnet.harness.schedules.from_torch`.",
    }
    return type(name.title().replace("-", "").replace("_", ""), (TorchSchedule,), attrs)
