"""MLR-SNet in PyTorch Lightning: a ``Callback`` that sets the LR before each optimizer step.

Lightning steps the schedulers of ``configure_optimizers`` after ``optimizer.step()`` and
without a loss (``step()``; with ``monitor`` and ``reduce_on_plateau``, a logged metric, one
step late), so MLRSNetScheduler cannot go there (it refuses, naming this callback).  The
callback instead::

    trainer = L.Trainer(max_epochs=30, callbacks=[MLRSNetCallback("ours", num_classes=10)])

* records the training loss of each micro-batch in ``on_before_backward`` (undoing Lightning's
  division by ``accumulate_grad_batches``), and in ``on_before_optimizer_step`` (after the
  gradients of the last micro-batch, before the optimizer applies them, AMP unscaling
  included) steps MLR-SNet on their mean;
* builds the scheduler on ``trainer.optimizers[optimizer_index]`` in ``on_train_start``, with
  the length of training read from the trainer (``max_epochs`` and
  ``estimated_stepping_batches``) unless given (``epochs=``, ``total_steps=``, ...);
* keeps its state in Lightning's checkpoints (``state_dict``/``load_state_dict``), so
  ``trainer.fit(model, ckpt_path=...)`` resumes the schedule exactly.

Under DDP the scheduler averages the loss over the processes (torch.distributed is
initialised by Lightning).  GradScaler skips (``precision="16-mixed"``) are withdrawn as in
any loop (:mod:`mlrsnet.snet.scheduler`).  Other keyword arguments go to
:class:`~mlrsnet.snet.scheduler.MLRSNetScheduler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from mlrsnet.snet.integrations import LENGTH_KEYS, training_length
from mlrsnet.snet.scheduler import MLRSNetScheduler


class MLRSNetCallback(pl.Callback):
    """Drives ``trainer.optimizers[optimizer_index]``'s LR with MLR-SNet (module docstring)."""

    def __init__(self, checkpoints: Any = "official", *, optimizer_index: int = 0, **scheduler_kwargs: Any) -> None:
        self.checkpoints = checkpoints
        self.optimizer_index = optimizer_index
        self.scheduler_kwargs = scheduler_kwargs
        #: The scheduler (built in ``on_train_start``).
        self.scheduler: MLRSNetScheduler | None = None
        self._pending: Mapping[str, Any] | None = None
        self._losses: list[torch.Tensor] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        kwargs = dict(self.scheduler_kwargs)
        if not any(k in kwargs for k in LENGTH_KEYS):
            epochs = trainer.max_epochs if trainer.max_steps in (-1, None) else None
            kwargs.update(training_length(trainer.estimated_stepping_batches, epochs))
        self.scheduler = MLRSNetScheduler(trainer.optimizers[self.optimizer_index], self.checkpoints, **kwargs)
        if self._pending is not None:
            self.scheduler.load_state_dict(self._pending)
            self._pending = None
        self._losses.clear()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        scale = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
        self._losses.append(loss.detach().float() * scale)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.scheduler is None or getattr(optimizer, "_optimizer", optimizer) is not self.scheduler.optimizer:
            return
        if not self._losses:
            raise RuntimeError("MLRSNetCallback saw no loss before this optimizer step (on_before_backward "
                               "was not called): MLR-SNet needs the training loss of the step")
        loss = torch.stack(self._losses).mean()
        self._losses.clear()
        self.scheduler.step(loss)

    def state_dict(self) -> dict[str, Any]:
        if self.scheduler is not None:
            return self.scheduler.state_dict()
        return dict(self._pending) if self._pending is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state_dict)
        else:
            self._pending = state_dict  # applied in on_train_start, once the optimizer exists
