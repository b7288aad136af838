"""A frozen MLR-SNet as a learning-rate scheduler for any PyTorch training loop.

Call ``scheduler.step(loss)`` once per iteration, after ``loss.backward()`` and before
``optimizer.step()``: unlike epoch-indexed schedules, MLR-SNet reads the loss of the very
batch whose step it sizes (like ``ReduceLROnPlateau.step(metric)`` reads a value)::

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, weight_decay=5e-4)
    scheduler = MLRSNetScheduler(optimizer, checkpoints="ours", num_classes=10,
                                 epochs=epochs, steps_per_epoch=len(loader))
    for epoch in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward()
            scheduler.step(loss)
            optimizer.step()

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
  epoch, before it).
* The gate convention defaults to the checkpoint set's own
  (:attr:`~mlrsnet.snet.checkpoint_sets.CheckpointSet.convention`): for the official files
  that is the released meta-test script's, ``"meta-test-script"``; ``cell="meta-train"``
  runs them with the cell of the meta-training code that wrote them
  (:mod:`mlrsnet.snet.net`; ``docs/transfer_conventions.md`` shows both).
* Param groups keep their LR ratios (the script has one group, and sets every group to the
  same LR); see below.  With one group, or groups that all start at the same LR, or a
  first group that starts at 0, every group gets the script's LR.
* Extensions the script does not have: language models (``vocab_size=``: the network
  reads ``loss / ln V``, ``gamma`` uses the perplexity), ``total_steps=`` for runs not
  counted in epochs, ``single=<epoch>`` (one checkpoint for the whole run, ``gamma`` from
  the initial loss), and :meth:`~MLRSNetScheduler.state_dict` for resuming.

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

Call order
----------
``step(loss)`` after ``optimizer.step()`` (torch's order for epoch schedules) would size
each step with the previous batch's LR.  Both orders give one optimizer step between two
scheduler steps, so the sign is the first iteration: if the optimizer has already stepped
(since this scheduler was constructed) when ``step`` is first called, a ``UserWarning``
says so, once.
"""

from __future__ import annotations

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


class MLRSNetScheduler(LRScheduler):
    """Sets ``optimizer``'s LRs to ``gamma * MLR-SNet(loss) * ratio_k`` at every :meth:`step`.

    ``checkpoints``: ``"official"``, ``"ours"`` or a directory (see
    :mod:`mlrsnet.snet.checkpoint_sets`); ``checkpoint_dir`` is where the official files live
    (else ``$MLRSNET_CHECKPOINTS``).  Exactly one of ``num_classes`` (images) or
    ``vocab_size`` (language models) says how the loss is scaled.

    A :class:`torch.optim.lr_scheduler.LRScheduler` that, like ``ReduceLROnPlateau``, does
    not run the base constructor (which would take a first step without a loss).
    ``last_epoch`` is the number of steps taken minus one (-1 before the first); see the
    module docstring for the param-group ratios, other schedulers and the call order.
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
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        self.scale = TaskScale.of(num_classes=num_classes, vocab_size=vocab_size)
        self.checkpoints = (checkpoints if isinstance(checkpoints, CheckpointSet)
                            else resolve_checkpoints(checkpoints, checkpoint_dir=checkpoint_dir))
        self.cell = check_cell(cell if cell is not None else self.checkpoints.convention)
        self.reference_loss = reference_loss
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
        self.last_epoch = -1  # torch convention: number of step() calls - 1
        self.base_lrs: list[float] = []
        self._add_new_groups()
        self._last_lr: list[float | Tensor] = self._group_lrs()
        # Call-order check: count optimizer steps until our first step (then unhook).
        self._optimizer_steps = [0]
        counter = self._optimizer_steps

        def count(*_: Any) -> None:
            counter[0] += 1

        self._order_hook: Any = optimizer.register_step_post_hook(count)

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

    def _check_call_order(self) -> None:
        if self._order_hook is None:
            return
        self._order_hook.remove()
        self._order_hook = None
        if self._optimizer_steps[0] > 0:
            warnings.warn(WRONG_ORDER_WARNING, UserWarning, stacklevel=4)

    def next_lr(self, loss: Tensor | float) -> float:
        """Advance one step on ``loss`` and return the (first group's) LR, without touching
        the optimiser: the harness's method ``mlrsnet-transfer`` sets the groups itself."""
        self._check_call_order()
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        self._recent.append(value)
        step = self.last_epoch + 1
        stage = self._stage_at(step)
        if stage != self._stage:
            first = self._stage < 0
            if first and self.initial_loss is not None:
                reference = self.initial_loss
            elif self.reference_loss is not None:
                started = time.perf_counter()
                reference = float(self.reference_loss())
                self.reference_calls.append((step, reference, time.perf_counter() - started))
            else:
                reference = sum(self._recent) / len(self._recent)
            self.gamma = self.scale.gamma(reference)
            self._stage = stage
        net = self._nets[self.stage_epochs[stage]]
        with torch.no_grad():
            out, self._state = net(self.scale.net_input(value), self._state)
        self.last_epoch = step
        return self.gamma * float(out)

    def step(self, loss: Tensor | float) -> None:  # type: ignore[override]
        """Set every param group's LR for the step about to be taken on ``loss`` (the loss of
        this batch, after ``loss.backward()`` and before ``optimizer.step()``)."""
        lr = self.next_lr(loss)
        self._add_new_groups()
        for group, ratio in zip(self.optimizer.param_groups, self.lr_ratios, strict=True):
            value = lr * ratio  # ratio 1.0: exactly the MLR-SNet LR
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value
        self._last_lr = self._group_lrs()

    def get_lr(self) -> list[float | Tensor]:
        raise TypeError("MLR-SNet's next LR depends on the loss: call step(loss), and read "
                        "the LRs with get_last_lr()")

    def get_last_lr(self) -> list[float | Tensor]:
        """The LR of every param group after the last :meth:`step` (before the first: the
        groups' LRs at construction)."""
        return list(self._last_lr)

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
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
        self.last_epoch = int(state["last_epoch"])
        self._stage = int(state["stage"])
        self.gamma = float(state["gamma"])
        self._state = LSTMState(state["h"].clone(), state["c"].clone())
        self._recent = deque((float(v) for v in state["recent"]), maxlen=self.loss_window)
        self._last_lr = list(state["last_lr"])
        if "base_lrs" in state:
            self.base_lrs = [float(b) for b in state["base_lrs"]]
