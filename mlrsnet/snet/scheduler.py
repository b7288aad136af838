"""A frozen MLR-SNet as a learning-rate scheduler for any PyTorch training loop.

Call ``scheduler.step(loss)`` once per optimizer step, with the loss of the batch that step
is taken on, before ``optimizer.step()``: unlike epoch-indexed schedules, MLR-SNet reads the
loss of the very batch whose step it sizes (like ``ReduceLROnPlateau.step(metric)`` reads a
value)::

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, weight_decay=5e-4)
    scheduler = MLRSNetScheduler(optimizer, checkpoints="ours", num_classes=10,
                                 epochs=epochs, steps_per_epoch=len(loader))
    for epoch in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward()
            scheduler.step(loss)
            optimizer.step()

``docs/training_loops.md`` shows it in the loops people use (AMP, gradient accumulation,
DDP, resuming, and the adapters for Lightning, Hugging Face's Trainer and timm in
:mod:`mlrsnet.snet.integrations`).

What it follows
---------------
The official meta-test script, ``meta-test/meta_test.py`` of xjtushujun/MLR-SNet: the
set's first checkpoint for the first third of training, its middle one for the second
third, its last one for the final third (``mlr_snet 1/100/200.pth``, switched at epochs
``E // 3`` and ``E // 3 * 2``); at the start of each stage ``gamma = |sqrt(L) ln(L C) /
C^0.25 / 4|`` from the current training loss ``L`` (:mod:`mlrsnet.snet.gamma`); the
LR of every step is ``gamma * MLR-SNet(loss)`` on that mini-batch's loss; the LSTM state
is carried across every step, stage switch and epoch.  Where this class differs:

* ``L`` at a stage switch: the script evaluates the whole training set in eval mode there
  (and before training).  Give ``reference_loss=`` a function that does (the harness's
  ``mlrsnet-transfer`` passes its full eval-mode pass, ``RunContext.train_loss``) and it is
  called at each switch, the first included; without one, ``L`` is the mean of the last
  ``loss_window`` mini-batch losses (costs nothing, needs no second pass; at the first
  step, the first mini-batch loss).  ``initial_loss`` overrides the first stage's.  The
  pass runs at the switch step, after that step's forward (the script: at the start of the
  epoch, before it).  A reference loss that is not a positive finite number falls back to
  the recent mean, with a warning.
* The gate convention defaults to the checkpoint set's own
  (:attr:`~mlrsnet.snet.checkpoint_sets.CheckpointSet.convention`): for the official files
  that is the released meta-test script's, ``"meta-test-script"``; ``cell="meta-train"``
  runs them with the cell of the meta-training code that wrote them
  (:mod:`mlrsnet.snet.net`; ``docs/transfer_conventions.md`` shows both).
* Param groups keep their LR ratios (the script has one group, and sets every group to the
  same LR); see below.  With one group, or groups that all start at the same LR, or a
  first group that starts at 0, every group gets the script's LR.
* A non-finite loss is not a step of the schedule (the script feeds it to the LSTM, after
  which every LR is NaN); an optimizer step that was not taken (``GradScaler`` skipped it)
  is withdrawn from the schedule; see "Bad losses and skipped steps" below.
* Several processes (DDP): the loss is averaged over the process group before MLR-SNet
  reads it (the script runs in one process); see "Several processes" below.
* Extensions the script does not have: language models (``vocab_size=``: the network
  reads ``loss / ln V``, ``gamma`` uses the perplexity), ``total_steps=`` for runs not
  counted in epochs, ``single=<epoch>`` (one checkpoint for the whole run, ``gamma`` from
  the initial loss), and :meth:`~MLRSNetScheduler.state_dict` for resuming.

For finite losses in one process, with every step taken, the LRs are the script's rule
exactly (``tests/snet/test_scheduler.py`` checks them against the official trace).

Param groups
------------
At construction each group's starting LR is stored as ``group["initial_lr"]`` (kept if
already there, as torch's schedulers do) and in :attr:`~MLRSNetScheduler.base_lrs`.  At
every step group ``k`` gets ``lr_k = gamma * MLR-SNet(loss) * ratio_k`` with::

    ratio_k = initial_lr_k / initial_lr_0    if initial_lr_0 > 0
    ratio_k = 1                              if initial_lr_0 == 0 (the usual lr=0.0)

so the first group always gets the MLR-SNet LR itself, two groups built with LRs 0.1 and
0.01 keep a ratio of 10, and a group built with LR 0 beside a positive first group stays
frozen at 0.  When the first group starts at 0 but another does not, the ratios are
undefined: every group gets the MLR-SNet LR and a warning says so.  A group added later
(``optimizer.add_param_group``) gets its ratio from its ``initial_lr``, else its LR, at the
first step that sees it.

Bad losses and skipped steps
----------------------------
The schedule advances once per optimizer step actually taken, on that step's loss:

* ``step(loss)`` with a NaN or infinite loss leaves everything as it was: the LSTM state,
  ``gamma``, the loss window, ``last_epoch`` and the param groups' LRs (before the first
  step: the LRs they were built with).  It is counted in :attr:`nonfinite_losses` and warned
  about once.  The LRs that follow are those of the same run without that call.  Skip
  ``optimizer.step()`` on such a batch (``torch.amp.GradScaler`` does it by itself: the
  gradients are not finite either); a step on NaN gradients makes the weights NaN whatever
  the LR.
* An optimizer step that was not taken after a ``step(loss)`` (``GradScaler`` skipped it
  because the scaled gradients overflowed, or the loop skipped it) is withdrawn: at the
  next ``step(loss)`` the scheduler sees, through a step hook on the optimizer, that the
  optimizer did not step since, restores its state from before that call and then reads
  the new loss.  Counted in :attr:`withdrawn_steps`.  With AMP nothing else is needed.
* Gradient accumulation: call ``step(loss)`` once per optimizer step with the mean loss of
  its micro-batches.  Called once per micro-batch, every call but the last before each
  optimizer step is withdrawn, so MLR-SNet reads only the last micro-batch's loss; when
  that happens before three optimizer steps in a row, a warning says so (once).

Several processes
-----------------
Under DDP each process sees its own batch, hence its own loss; MLR-SNet fed those would
give each process its own LR, and the replicas would drift apart although their gradients
are averaged.  When ``torch.distributed`` is initialised with more than one process
(``sync_loss=None``, the default), each ``step(loss)`` averages the loss over the process
group (``process_group``, else the default group) with one ``all_reduce`` of a scalar, and
so does every ``reference_loss()`` at a stage switch: every process gets the same LR, the
loss of the global batch.  ``sync_loss=False`` turns this off (a loss already averaged by
the caller), ``sync_loss=True`` requires it.  Every process must call ``step(loss)`` at the
same steps (as DDP's backward already requires).

With other schedulers
---------------------
MLR-SNet sets every group's LR outright at each step; it does not multiply the LR it
finds.  It therefore composes *in sequence*: let another scheduler run first (a
``LinearLR`` warm-up, say), then construct this one when it takes over and give it the
remaining length of training; the group ratios come from ``initial_lr``, which the first
scheduler already stored, not from the warm-up's current LRs.  It is not chainable in
torch's sense: ``ChainedScheduler``/``SequentialLR`` call ``step()`` without a loss, and
torch's chainable schedulers (``LinearLR``, ``ExponentialLR``, ...) multiply the current
LR by the *ratio* of consecutive factors, which only works when nobody rewrites the LR in
between.  To put a factor on top of MLR-SNet, multiply ``group["lr"]`` after ``step(loss)``.

Call order and misuse
---------------------
``step(loss)`` after ``optimizer.step()`` (torch's order for epoch schedules) would size
each step with the previous batch's LR.  Both orders give one optimizer step between two
scheduler steps, so the sign is the first iteration: if the optimizer has already stepped
(since this scheduler was constructed) when ``step`` is first called, a ``UserWarning``
says so, once.  ``step()`` without a loss (what trainers that step epoch schedules call:
Lightning's ``configure_optimizers`` schedulers, Hugging Face's ``optimizers=(opt, sched)``,
``SequentialLR``) raises a ``TypeError`` naming the adapters; an integer (``step(5)``: an
epoch number, as timm's ``scheduler.step(epoch)``) or a tensor of more than one element is
refused, never read as a loss.

Resuming
--------
:meth:`~MLRSNetScheduler.state_dict` / :meth:`~MLRSNetScheduler.load_state_dict` resume
exactly (LSTM state, stage, ``gamma``, loss window, counters).  ``last_epoch`` is the index
of the last step taken (-1 before the first), as in torch; since MLR-SNet takes no step at
construction, ``MLRSNetScheduler(..., last_epoch=k)`` leaves ``last_epoch == k`` and the
next ``step(loss)`` is step ``k + 1``.  As in torch, ``last_epoch >= 0`` requires
``initial_lr`` in every param group (an optimizer loaded from a checkpoint has it).  It
restores the position only (the stage of step ``k + 1``, ``gamma`` from its first loss or
``reference_loss``/``initial_loss``), with a fresh LSTM state: for an exact resume load the
state dict.  The scheduler pickles and deep-copies at any time (a ``reference_loss`` or
``process_group`` must then be picklable too).
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from mlrsnet.errors import UserError
from mlrsnet.snet.checkpoint_sets import CheckpointSet, resolve_checkpoints
from mlrsnet.snet.gamma import TaskScale
from mlrsnet.snet.net import LSTMState, MLRSNet, check_cell

WRONG_ORDER_WARNING = (
    "MLRSNetScheduler.step(loss) was first called after optimizer.step(): call it after "
    "loss.backward() and before optimizer.step(), so the LR it sets is used for the step on "
    "that batch; in this order every LR lags one step behind its loss"
)
NO_LOSS_ERROR = (
    "MLRSNetScheduler.step() needs the loss of the batch the next optimizer step is taken on: "
    "call step(loss) before optimizer.step().  A trainer that steps schedulers without a loss "
    "(Lightning's configure_optimizers lr_scheduler, Hugging Face's Trainer(optimizers=(opt, "
    "sched)), SequentialLR/ChainedScheduler) cannot drive it: use the adapters of "
    "mlrsnet.snet.integrations (lightning.MLRSNetCallback, huggingface.MLRSNetCallback, "
    "timm.MLRSNetTimmScheduler); see docs/training_loops.md"
)
ACCUMULATION_WARNING = (
    "MLRSNetScheduler.step(loss) was called more than once before each of the last 3 "
    "optimizer steps: every call but the last before an optimizer step is withdrawn, so "
    "MLR-SNet reads only the last micro-batch's loss.  With gradient accumulation call "
    "step(loss) once per optimizer step, with the mean loss of its micro-batches"
)
#: Optimizer steps in a row, each preceded by a withdrawn call, that trigger ACCUMULATION_WARNING.
ACCUMULATION_STREAK = 3


def stage_starts(*, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None) -> tuple[int, int, int]:
    """First step of each third of training.

    With epochs the official rule is used: switch at epoch ``E // 3`` and ``E // 3 * 2``
    (0-based), so a run of fewer than three epochs uses the last checkpoint throughout.
    """
    if epochs is not None and steps_per_epoch is not None:
        return 0, (epochs // 3) * steps_per_epoch, (epochs // 3 * 2) * steps_per_epoch
    if total_steps is not None:
        return 0, total_steps // 3, total_steps // 3 * 2
    raise UserError("the three-stage MLR-SNet schedule needs the length of training: give "
                    "epochs= and steps_per_epoch=, or total_steps= (or use single=<epoch>)")


def _describe(kind: str, outputs: int) -> str:
    return (f"image classification with {outputs} classes" if kind == "image"
            else f"language modelling with a {outputs}-token vocabulary")


def _as_float(value: float | Tensor) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


def check_loss(loss: Any) -> float | Tensor:
    """``loss`` as one floating-point number (a float, or a one-element floating tensor left
    on its device), or a ``TypeError``/``ValueError`` saying why it is not a loss.

    Refused: ``None`` (a trainer stepping schedulers without a loss), ``bool``, integers
    (``step(5)``: an epoch or step number, as timm's ``scheduler.step(epoch)`` passes),
    integer tensors, tensors of more than one element (an unreduced loss)."""
    if loss is None:
        raise TypeError(NO_LOSS_ERROR)
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(f"MLRSNetScheduler.step(loss) needs one number, got a tensor of shape "
                             f"{tuple(loss.shape)}: reduce the loss (e.g. .mean()) first")
        if not (loss.is_floating_point() or loss.is_complex()):
            raise TypeError(f"MLRSNetScheduler.step(loss) got an integer tensor ({loss.dtype}), "
                            "not a loss: an epoch or step number?")
        return loss.detach().reshape(())
    if isinstance(loss, bool | numbers.Integral):
        raise TypeError(
            f"MLRSNetScheduler.step(loss) got the integer {loss!r}, not a loss: an epoch or step "
            "number (timm's scheduler.step(epoch) passes one)?  MLR-SNet reads the training loss "
            "of the batch (a float or a 0-dim tensor); timm-style loops use "
            "mlrsnet.snet.integrations.timm.MLRSNetTimmScheduler")
    if isinstance(loss, numbers.Real):
        return float(loss)
    raise TypeError(f"MLRSNetScheduler.step(loss) needs the loss as a float or a 0-dim tensor, "
                    f"not {type(loss).__name__}")


class _StepCounter:
    """An optimizer step post-hook counting the optimizer steps taken (a class, not a
    closure, so the optimizer's hooks and this scheduler pickle)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_: Any) -> None:
        self.count += 1


class MLRSNetScheduler(LRScheduler):
    """Sets ``optimizer``'s LRs to ``gamma * MLR-SNet(loss) * ratio_k`` at every :meth:`step`.

    ``checkpoints``: ``"official"``, ``"ours"`` or a directory (see
    :mod:`mlrsnet.snet.checkpoint_sets`); ``checkpoint_dir`` is where the official files live
    (else ``$MLRSNET_CHECKPOINTS``).  Exactly one of ``num_classes`` (images) or
    ``vocab_size`` (language models) says how the loss is scaled.  ``sync_loss`` and
    ``process_group``: averaging the loss over processes (module docstring, "Several
    processes"); ``last_epoch``: as torch's (module docstring, "Resuming").

    A :class:`torch.optim.lr_scheduler.LRScheduler` that, like ``ReduceLROnPlateau``, does
    not run the base constructor (which would take a first step without a loss).
    ``last_epoch`` is the number of steps taken minus one (-1 before the first); a
    non-finite loss or a withdrawn step does not count.  See the module docstring for the
    param-group ratios, bad losses and skipped steps, other schedulers and the call order.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        checkpoints: str | os.PathLike[str] | CheckpointSet = "official",
        *,
        num_classes: int | None = None,
        vocab_size: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        total_steps: int | None = None,
        single: int | None = None,
        cell: str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        initial_loss: float | None = None,
        loss_window: int | None = None,
        reference_loss: Callable[[], float] | None = None,
        sync_loss: bool | None = None,
        process_group: Any = None,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"last_epoch must be an integer >= -1 (the index of the last step taken), "
                             f"not {last_epoch!r}")
        if initial_loss is not None and not (math.isfinite(initial_loss) and initial_loss > 0):
            raise ValueError(f"initial_loss must be a positive finite training loss, not {initial_loss!r}")
        if sync_loss not in (None, True, False):
            raise TypeError(f"sync_loss must be None (automatic), True or False, not {sync_loss!r}")
        self.optimizer = optimizer
        self.scale = TaskScale.of(num_classes=num_classes, vocab_size=vocab_size)
        self.checkpoints = (checkpoints if isinstance(checkpoints, CheckpointSet)
                            else resolve_checkpoints(checkpoints, checkpoint_dir=checkpoint_dir))
        self.cell = check_cell(cell if cell is not None else self.checkpoints.convention)
        self.reference_loss = reference_loss
        self.sync_loss = sync_loss
        self.process_group = process_group
        #: ``(step, loss, seconds)`` of every ``reference_loss()`` call (a stage switch).
        self.reference_calls: list[tuple[int, float, float]] = []
        if single is not None:
            self.stage_epochs: tuple[int, ...] = (int(single),)
            self.stage_starts: tuple[int, ...] = (0,)
        else:
            self.stage_epochs = self.checkpoints.stages
            self.stage_starts = stage_starts(total_steps=total_steps, epochs=epochs,
                                             steps_per_epoch=steps_per_epoch)
        self._nets: dict[int, MLRSNet] = {e: self.checkpoints.load(e, self.cell) for e in set(self.stage_epochs)}
        if loss_window is None:
            loss_window = max(1, steps_per_epoch // 4) if steps_per_epoch else 25
        self.loss_window = int(loss_window)
        self.initial_loss = initial_loss
        self._recent: deque[float] = deque(maxlen=self.loss_window)
        self._state: LSTMState = self._nets[self.stage_epochs[0]].initial_state()
        self._stage = -1
        self.gamma = float("nan")
        self.last_epoch = last_epoch  # torch convention: index of the last step taken
        #: ``step(loss)`` calls whose loss was NaN or infinite (not read; see the module docstring).
        self.nonfinite_losses = 0
        #: Steps withdrawn because the optimizer did not step after them (GradScaler skips).
        self.withdrawn_steps = 0
        self.base_lrs: list[float] = []
        if last_epoch >= 0:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when "
                                   "resuming a scheduler with last_epoch >= 0: load the optimizer's "
                                   "state dict first (or load this scheduler's state_dict instead)")
        self._add_new_groups()
        self._last_lr: list[float | Tensor] = self._group_lrs()
        # The optimizer steps taken, seen through a step hook: the call-order check at the
        # first step(loss), and withdrawing a step the optimizer did not take.
        self._counter = _StepCounter()
        self._order_hook: Any = optimizer.register_step_post_hook(self._counter)
        self._order_checked = False
        self._warned: set[str] = set()
        #: the counter's value at the last step read, the state before that read (while the
        #: optimizer may still not take its step), the reads before the optimizer's first step
        self._count_at_step = 0
        self._undo: dict[str, Any] | None = None
        self._start_tracking()

    # -- pickling: the hook handle is not carried; the hook is put back on the optimizer ----
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_order_hook", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._order_hook = self.optimizer.register_step_post_hook(self._counter)

    # -- the schedule -------------------------------------------------------------------
    @property
    def current_checkpoint(self) -> int | None:
        """Epoch label of the checkpoint in use (None before the first step)."""
        return self.stage_epochs[self._stage] if self._stage >= 0 else None

    @property
    def net_parameters(self) -> int:
        """Parameter count of one MLR-SNet (the same for every checkpoint)."""
        return next(iter(self._nets.values())).num_parameters()

    @property
    def lr_ratios(self) -> list[float]:
        """Each param group's LR relative to the first group's (see the module docstring)."""
        first = self.base_lrs[0]
        if first > 0:
            return [b / first for b in self.base_lrs]
        return [1.0] * len(self.base_lrs)

    def _stage_at(self, step: int) -> int:
        return max(k for k, start in enumerate(self.stage_starts) if start <= step)

    def _group_lrs(self) -> list[float | Tensor]:
        return [g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"]
                for g in self.optimizer.param_groups]

    def _add_new_groups(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) < len(self.base_lrs):
            raise ValueError(f"the optimizer has {len(groups)} param groups, fewer than the "
                             f"{len(self.base_lrs)} this scheduler was made for")
        before = len(self.base_lrs)
        for group in groups[before:]:
            initial = group["lr"]
            group.setdefault("initial_lr", initial.clone() if isinstance(initial, Tensor) else initial)
            self.base_lrs.append(_as_float(group["initial_lr"]))
        if len(self.base_lrs) > before and self.base_lrs[0] == 0 and any(b != 0 for b in self.base_lrs):
            warnings.warn(
                "MLRSNetScheduler: the first param group starts with LR 0 and another does not, "
                "so LR ratios are undefined; every group gets the MLR-SNet LR (initial LRs "
                f"{self.base_lrs})", UserWarning, stacklevel=3)

    def _warn_once(self, key: str, message: str, stacklevel: int) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)

    # -- several processes --------------------------------------------------------------
    def _syncing(self) -> bool:
        if self.sync_loss is False:
            return False
        import torch.distributed as dist

        ready = dist.is_available() and dist.is_initialized()
        if self.sync_loss and not ready:
            raise RuntimeError("MLRSNetScheduler(sync_loss=True) needs torch.distributed to be "
                               "initialised (dist.init_process_group) before step(loss)")
        return ready and dist.get_world_size(self.process_group) > 1

    def _global_mean(self, value: float | Tensor) -> float:
        """``value`` averaged over the process group when syncing (one all_reduce), as a float."""
        if not self._syncing():
            return _as_float(value)
        import torch.distributed as dist

        if isinstance(value, Tensor):
            device = value.device
        elif "nccl" in str(dist.get_backend(self.process_group)).lower() and torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
        else:
            device = torch.device("cpu")
        total = torch.as_tensor(value, dtype=torch.float64, device=device).detach().reshape(1).clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.process_group)
        return float(total) / dist.get_world_size(self.process_group)

    # -- one step -----------------------------------------------------------------------
    def _check_call_order(self, stacklevel: int) -> None:
        if self._order_checked:
            return
        self._order_checked = True
        if self._counter.count > 0:
            warnings.warn(WRONG_ORDER_WARNING, UserWarning, stacklevel=stacklevel + 1)

    def _snapshot(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "stage": self._stage, "gamma": self.gamma,
                "h": self._state.h.clone(), "c": self._state.c.clone(), "recent": list(self._recent),
                "last_lr": list(self._last_lr)}

    def _restore(self, snap: Mapping[str, Any]) -> None:
        self.last_epoch = int(snap["last_epoch"])
        self._stage = int(snap["stage"])
        self.gamma = float(snap["gamma"])
        self._state = LSTMState(snap["h"].clone(), snap["c"].clone())
        self._recent = deque((float(v) for v in snap["recent"]), maxlen=self.loss_window)
        self._last_lr = list(snap["last_lr"])

    def _start_tracking(self) -> None:
        """Forget the optimizer steps seen so far: from here on (construction, a loaded
        state) the optimizer has not stepped, and the reads since are the "first interval"."""
        self._count_at_step = self._counter.count = 0
        self._undo = None
        self._first_interval: dict[str, Any] | None = {"start": self._snapshot(), "reads": 0, "last": None}
        self._references: dict[int, float] = {}
        self._interval_withdrew = False
        self._withdrawal_streak = 0

    def _follow_optimizer(self, stacklevel: int) -> None:
        """Take out of the schedule the steps the optimizer did not take (module docstring,
        "Bad losses and skipped steps").

        Once the optimizer has stepped, a read after which it did not step is withdrawn
        eagerly, here, before the next loss is read.  Before its first step nothing can tell
        a loop whose GradScaler skips its first steps from one that never steps this
        optimizer (tabulating LRs for given losses), so reads accumulate; when the first
        optimizer step shows up after several, the state is rebuilt from the last of them
        alone (the one whose step was taken), and only the LR of that first step came from
        the others."""
        count = self._counter.count
        if count != self._count_at_step:  # the optimizer stepped since the last read: it stood
            first = self._first_interval
            if first is not None and first["reads"] > 1:
                self._restore(first["start"])
                lr = self._read(first["last"], stacklevel + 1)
                self._last_lr = [lr * ratio for ratio in self.lr_ratios]
                self.withdrawn_steps += first["reads"] - 1
                self._interval_withdrew = True
            self._first_interval = None
            self._undo = None
            self._references.clear()  # they described the weights before this step
            self._count_at_step = count
            self._withdrawal_streak = self._withdrawal_streak + 1 if self._interval_withdrew else 0
            self._interval_withdrew = False
            if self._withdrawal_streak >= ACCUMULATION_STREAK:
                self._warn_once("accumulation", ACCUMULATION_WARNING, stacklevel + 1)
        elif count > 0 and self._undo is not None:  # in use, and it did not take the last step
            self._restore(self._undo)
            self._undo = None
            self.withdrawn_steps += 1
            self._interval_withdrew = True

    def _reference(self, step: int, first: bool, stacklevel: int) -> float:
        """``L`` for ``gamma`` at the start of a stage (module docstring)."""
        recent = sum(self._recent) / len(self._recent)
        if first and self.initial_loss is not None:
            return float(self.initial_loss)
        if self.reference_loss is None:
            return recent
        if step in self._references:  # the same weights: a withdrawn step read again
            value = self._references[step]
        else:
            started = time.perf_counter()
            value = self._global_mean(self.reference_loss())
            self.reference_calls.append((step, value, time.perf_counter() - started))
            self._references[step] = value
        if math.isfinite(value) and value > 0:
            return value
        warnings.warn(f"MLRSNetScheduler: reference_loss() returned {value!r} at step {step}, not a "
                      f"positive finite loss; gamma uses the mean of the recent mini-batch losses, "
                      f"{recent:.4g}", UserWarning, stacklevel=stacklevel + 1)
        return recent

    def _read(self, value: float, stacklevel: int) -> float:
        """The official rule on one finite loss: the (first group's) LR of the next step."""
        self._recent.append(value)
        step = self.last_epoch + 1
        stage = self._stage_at(step)
        if stage != self._stage:
            self.gamma = self.scale.gamma(self._reference(step, self._stage < 0, stacklevel + 1))
            self._stage = stage
        net = self._nets[self.stage_epochs[stage]]
        with torch.no_grad():
            out, self._state = net(self.scale.net_input(value), self._state)
        self.last_epoch = step
        return self.gamma * float(out)

    def _advance(self, loss: Any, stacklevel: int) -> float | None:
        """Read one loss: the new (first group's) LR, or ``None`` for a non-finite loss."""
        value = self._global_mean(check_loss(loss))
        self._check_call_order(stacklevel + 1)
        self._follow_optimizer(stacklevel + 1)
        if not math.isfinite(value):
            self.nonfinite_losses += 1
            self._warn_once("nonfinite", (
                f"MLRSNetScheduler: the loss at step {self.last_epoch + 1} is {value} (not finite): "
                "MLR-SNet's state does not take it in and the LRs stay as they were; skip "
                "optimizer.step() on such a batch (torch.amp.GradScaler does so by itself).  "
                "Further non-finite losses are counted in scheduler.nonfinite_losses, not warned "
                "about"), stacklevel + 1)
            return None
        self._undo = self._snapshot()
        if self._first_interval is not None:
            self._first_interval["reads"] += 1
            self._first_interval["last"] = value
        return self._read(value, stacklevel + 1)

    def next_lr(self, loss: Tensor | float) -> float:
        """Advance one step on ``loss`` and return the (first group's) LR, without touching
        the optimiser: the harness's method ``mlrsnet-transfer`` sets the groups itself.  A
        non-finite loss returns the last LR (see the module docstring)."""
        lr = self._advance(loss, stacklevel=2)
        return lr if lr is not None else _as_float(self._last_lr[0])

    def step(self, loss: Tensor | float | None = None) -> None:  # type: ignore[override]
        """Set every param group's LR for the step about to be taken on ``loss`` (the loss of
        this batch, before ``optimizer.step()``).  A non-finite loss leaves the LRs as they
        were (the LRs of the last step taken); ``step()`` without a loss raises ``TypeError``."""
        withdrawn = self.withdrawn_steps
        lr = self._advance(loss, stacklevel=2)
        if lr is None:
            if self.withdrawn_steps != withdrawn:  # put back the LRs of the last step taken
                for group, last in zip(self.optimizer.param_groups, self._last_lr, strict=False):
                    self._set_group_lr(group, _as_float(last))
            return
        self._add_new_groups()
        for group, ratio in zip(self.optimizer.param_groups, self.lr_ratios, strict=True):
            self._set_group_lr(group, lr * ratio)  # ratio 1.0: exactly the MLR-SNet LR
        self._last_lr = self._group_lrs()

    @staticmethod
    def _set_group_lr(group: dict[str, Any], value: float) -> None:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value

    def get_lr(self) -> list[float | Tensor]:
        raise TypeError("MLR-SNet's next LR depends on the loss: call step(loss), and read "
                        "the LRs with get_last_lr()")

    def get_last_lr(self) -> list[float | Tensor]:
        """The LR of every param group after the last :meth:`step` (before the first: the
        groups' LRs at construction)."""
        return list(self._last_lr)

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs for an exact resume; only tensors, numbers,
        strings, lists and dicts (``torch.load(..., weights_only=True)`` reads it)."""
        withdrawable = (self._undo is not None and self._counter.count > 0
                        and self._counter.count == self._count_at_step)
        return {
            "task_kind": self.scale.kind,
            "outputs": self.scale.outputs,
            "last_epoch": self.last_epoch,
            "stage": self._stage,
            "gamma": self.gamma,
            "h": self._state.h.clone(),
            "c": self._state.c.clone(),
            "recent": list(self._recent),
            "last_lr": list(self._last_lr),
            "base_lrs": list(self.base_lrs),
            "cell": self.cell,
            "stage_epochs": list(self.stage_epochs),
            "stage_starts": list(self.stage_starts),
            "checkpoints": self.checkpoints.name,
            "checkpoint_sha256": {str(e): d for e, d in self.checkpoints.sha256().items()
                                  if e in self.stage_epochs},
            "nonfinite_losses": self.nonfinite_losses,
            "withdrawn_steps": self.withdrawn_steps,
            # the last step, when the optimizer has not (yet) taken it: withdrawn after the
            # resume if it still is not (a checkpoint written after a GradScaler skip)
            "undo": dict(self._undo) if withdrawable else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`; a state saved for another task kind or number of
        outputs, cell convention, stage layout or checkpoint file is refused with a
        ``ValueError``.  (States saved before ``task_kind``/``base_lrs`` were recorded load
        without those checks.)"""
        if "task_kind" in state:
            theirs = (str(state["task_kind"]), int(state["outputs"]))
            mine = (self.scale.kind, self.scale.outputs)
            if theirs != mine:
                raise ValueError(f"scheduler state is for {_describe(*theirs)}, this scheduler for "
                                 f"{_describe(*mine)}: a state resumes only the task it was saved on")
        for key, mine_value in (("cell", self.cell), ("stage_epochs", list(self.stage_epochs)),
                                ("stage_starts", list(self.stage_starts))):
            if state[key] != mine_value:
                raise ValueError(f"scheduler state has {key}={state[key]!r}, this scheduler {mine_value!r}")
        mine_sha = self.checkpoints.sha256()
        for epoch, digest in state.get("checkpoint_sha256", {}).items():
            if mine_sha.get(int(epoch)) != digest:
                raise ValueError(f"scheduler state was made with a different checkpoint for epoch {epoch}")
        self._restore(state)
        if "base_lrs" in state:
            self.base_lrs = [float(b) for b in state["base_lrs"]]
        self.nonfinite_losses = int(state.get("nonfinite_losses", 0))
        self.withdrawn_steps = int(state.get("withdrawn_steps", 0))
        self._start_tracking()
        if state.get("undo") is not None:  # saved before the optimizer took that step: it never will
            self._restore(state["undo"])
            self.withdrawn_steps += 1
            self._start_tracking()
