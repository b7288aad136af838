"""A frozen MLR-SNet as a learning-rate scheduler for any PyTorch training loop.

Call ``scheduler.step(loss)`` once per iteration, after ``loss.backward()`` and before
``optimizer.step()``: unlike epoch-indexed schedules, MLR-SNet reads the loss of the very
batch whose step it sizes (like ``ReduceLROnPlateau.step(metric)`` reads a value)::

    scheduler = MLRSNetScheduler(optimizer, checkpoints="ours", num_classes=10,
                                 epochs=epochs, steps_per_epoch=len(loader))
    for epoch in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(); loss.backward()
            scheduler.step(loss)
            optimizer.step()

The paper's transfer rule is the default: the set's first checkpoint for the first third
of training, its middle one for the second third, its last one for the final third
(epochs 1, 100, 200 of the official release).  At the start of each stage ``gamma`` is
recomputed from the current training loss, taken as the mean of the last ``loss_window``
mini-batch losses (the official script evaluates the whole training set there; a running
mean costs nothing and needs no second pass).  The first stage uses ``initial_loss`` when
given, else the first mini-batch loss.  ``single=<epoch>`` keeps one checkpoint for the
whole run, with ``gamma`` from the initial loss.

The LSTM state is carried across every step, stage switch and epoch, detached each step,
and is part of :meth:`state_dict`, so a resumed run continues the same schedule.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mlrsnet.errors import UserError
from mlrsnet.snet.checkpoint_sets import CheckpointSet, resolve_checkpoints
from mlrsnet.snet.gamma import TaskScale
from mlrsnet.snet.net import DEFAULT_CELL, LSTMState, MLRSNet, check_cell


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


class MLRSNetScheduler:
    """Sets ``optimizer``'s LR to ``gamma * MLR-SNet(loss)`` at every :meth:`step`.

    ``checkpoints``: ``"official"``, ``"ours"`` or a directory (see
    :mod:`mlrsnet.snet.checkpoint_sets`); ``checkpoint_dir`` is where the official files live
    (else ``$MLRSNET_CHECKPOINTS``).  Exactly one of ``num_classes`` (images) or
    ``vocab_size`` (language models) says how the loss is scaled.
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
        cell: str = DEFAULT_CELL,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        initial_loss: float | None = None,
        loss_window: int | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.scale = TaskScale.of(num_classes=num_classes, vocab_size=vocab_size)
        self.cell = check_cell(cell)
        self.checkpoints = (checkpoints if isinstance(checkpoints, CheckpointSet)
                            else resolve_checkpoints(checkpoints, checkpoint_dir=checkpoint_dir))
        if single is not None:
            self.stage_epochs: tuple[int, ...] = (int(single),)
            self.stage_starts: tuple[int, ...] = (0,)
        else:
            self.stage_epochs = self.checkpoints.stages
            self.stage_starts = stage_starts(total_steps=total_steps, epochs=epochs,
                                             steps_per_epoch=steps_per_epoch)
        self._nets: dict[int, MLRSNet] = {e: self.checkpoints.load(e, cell) for e in set(self.stage_epochs)}
        if loss_window is None:
            loss_window = max(1, steps_per_epoch // 4) if steps_per_epoch else 25
        self.loss_window = int(loss_window)
        self.initial_loss = initial_loss
        self._recent: deque[float] = deque(maxlen=self.loss_window)
        self._state: LSTMState = self._nets[self.stage_epochs[0]].initial_state()
        self._stage = -1
        self.gamma = float("nan")
        self.last_epoch = -1  # torch convention: number of step() calls - 1
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    # -- the schedule -------------------------------------------------------------------
    @property
    def current_checkpoint(self) -> int | None:
        """Epoch label of the checkpoint in use (None before the first step)."""
        return self.stage_epochs[self._stage] if self._stage >= 0 else None

    @property
    def net_parameters(self) -> int:
        """Parameter count of one MLR-SNet (the same for every checkpoint)."""
        return next(iter(self._nets.values())).num_parameters()

    def _stage_at(self, step: int) -> int:
        return max(k for k, start in enumerate(self.stage_starts) if start <= step)

    def next_lr(self, loss: Tensor | float) -> float:
        """Advance one step on ``loss`` and return the LR, without touching the optimiser."""
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        self._recent.append(value)
        step = self.last_epoch + 1
        stage = self._stage_at(step)
        if stage != self._stage:
            first = self._stage < 0
            reference = self.initial_loss if (first and self.initial_loss is not None) \
                else sum(self._recent) / len(self._recent)
            self.gamma = self.scale.gamma(reference)
            self._stage = stage
        net = self._nets[self.stage_epochs[stage]]
        with torch.no_grad():
            out, self._state = net(self.scale.net_input(value), self._state)
        self.last_epoch = step
        return self.gamma * float(out)

    def step(self, loss: Tensor | float) -> None:
        """Set every param group's LR for the step about to be taken on ``loss``."""
        lr = self.next_lr(loss)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr] * len(self.optimizer.param_groups)

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "stage": self._stage,
            "gamma": self.gamma,
            "h": self._state.h.clone(),
            "c": self._state.c.clone(),
            "recent": list(self._recent),
            "last_lr": list(self._last_lr),
            "cell": self.cell,
            "stage_epochs": list(self.stage_epochs),
            "stage_starts": list(self.stage_starts),
            "checkpoints": self.checkpoints.name,
            "checkpoint_sha256": {str(e): d for e, d in self.checkpoints.sha256().items()
                                  if e in self.stage_epochs},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, mine in (("cell", self.cell), ("stage_epochs", list(self.stage_epochs)),
                          ("stage_starts", list(self.stage_starts))):
            if state[key] != mine:
                raise ValueError(f"scheduler state has {key}={state[key]!r}, this scheduler {mine!r}")
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
