"""MLR-SNet in Hugging Face's ``Trainer``: a ``TrainerCallback`` and the scheduler it hands the
Trainer, whose state the Trainer writes into its checkpoints.

The Trainer steps its scheduler after ``optimizer.step()`` and without a loss, and its
callbacks are not given the loss, so MLRSNetScheduler cannot be the Trainer's scheduler on its
own (it refuses ``step()`` without a loss).  :class:`MLRSNetCallback` takes your optimizer and
hands the Trainer :attr:`MLRSNetCallback.lr_scheduler` in its place::

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    mlrsnet = MLRSNetCallback(optimizer, "ours", num_classes=2)
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      optimizers=(optimizer, mlrsnet.lr_scheduler), callbacks=[mlrsnet])

* The loss: a forward hook on the model records the ``loss`` its outputs carry in training
  (what the Trainer's default ``compute_loss`` trains on), per micro-batch; in
  ``on_pre_optimizer_step`` (gradients complete, clipped, before the optimizer applies them)
  MLR-SNet steps on the step's loss: the mean over the micro-batches, or their sum when the
  model normalised them by the step's ``num_items_in_batch`` (times the number of processes
  when the Trainer counted the items over all of them, ``average_tokens_across_devices``), so
  it is the loss the Trainer logs.  A model whose outputs carry no loss (``compute_loss_func``,
  label smoothing: the Trainer takes the labels away) must report it with
  :meth:`MLRSNetCallback.record_loss` from its ``compute_loss``; a step with none is refused.
* The length of training comes from the Trainer (``state.max_steps``, and
  ``num_train_epochs`` for the official epoch rule) unless given.
* The Trainer's scheduler, :attr:`~MLRSNetCallback.lr_scheduler`: its ``step()`` changes
  nothing (MLR-SNet already set the LR of the step), ``get_last_lr()`` is MLR-SNet's (what the
  Trainer logs as ``learning_rate``), and ``state_dict()`` is MLR-SNet's, so the Trainer saves
  it as ``scheduler.pt`` in every checkpoint and ``trainer.train(resume_from_checkpoint=...)``
  loads it back: the schedule resumes exactly.

Under DDP (the Trainer under ``torchrun``/``accelerate launch``) the scheduler averages the
loss over the processes.  Other keyword arguments go to
:class:`~mlrsnet.snet.scheduler.MLRSNetScheduler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler
from transformers import TrainerCallback

from mlrsnet.snet.integrations import LENGTH_KEYS, training_length
from mlrsnet.snet.scheduler import MLRSNetScheduler


class TrainerScheduler(LRScheduler):
    """The scheduler the Trainer steps, saves and loads; MLR-SNet's work is done by the
    callback (module docstring).  Built by :class:`MLRSNetCallback`, not by hand."""

    def __init__(self, callback: MLRSNetCallback) -> None:  # no base constructor: it would step
        self.callback = callback
        self.optimizer = callback.optimizer
        self.last_epoch = -1
        self._pending: Mapping[str, Any] | None = None

    def step(self, epoch: int | None = None) -> None:
        """Called by the Trainer after each optimizer step: nothing to change."""
        if self.callback.scheduler is None:
            raise RuntimeError("the Trainer steps MLRSNetCallback's lr_scheduler, but the callback is not "
                               "among its callbacks: Trainer(..., optimizers=(optimizer, mlrsnet.lr_scheduler), "
                               "callbacks=[mlrsnet])")
        self.last_epoch = self.callback.scheduler.last_epoch

    def get_lr(self) -> list[float | torch.Tensor]:
        return self.get_last_lr()

    def get_last_lr(self) -> list[float | torch.Tensor]:
        if self.callback.scheduler is not None:
            return self.callback.scheduler.get_last_lr()
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        if self.callback.scheduler is not None:
            return self.callback.scheduler.state_dict()
        return dict(self._pending) if self._pending is not None else {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if not state_dict:
            return
        if self.callback.scheduler is not None:
            self.callback.scheduler.load_state_dict(state_dict)
        else:  # the Trainer loads checkpoints before on_train_begin builds the scheduler
            self._pending = state_dict


class MLRSNetCallback(TrainerCallback):
    """Steps MLR-SNet on each optimizer step's training loss (module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer, checkpoints: Any = "official", **scheduler_kwargs: Any) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"MLRSNetCallback needs your optimizer (it drives its LR), not {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.checkpoints = checkpoints
        self.scheduler_kwargs = scheduler_kwargs
        #: The scheduler (built in ``on_train_begin``).
        self.scheduler: MLRSNetScheduler | None = None
        #: Give this to the Trainer: ``optimizers=(optimizer, callback.lr_scheduler)``.
        self.lr_scheduler = TrainerScheduler(self)
        self._losses: list[torch.Tensor] = []
        self._summed = False  # the micro-batch losses are normalised by the step's item count
        self._hook: Any = None

    # -- the loss ----------------------------------------------------------------------------
    def record_loss(self, loss: torch.Tensor, *, normalised_by_step_items: bool = False) -> None:
        """Record one micro-batch's training loss (the forward hook does it for models whose
        outputs carry a ``loss``); ``normalised_by_step_items``: the loss was divided by the
        whole step's item count (``num_items_in_batch``), so the step's loss is the sum."""
        self._losses.append(loss.detach().float().reshape(()))
        self._summed = normalised_by_step_items

    def _forward_hook(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return  # evaluation, prediction
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor):
            self.record_loss(loss, normalised_by_step_items=kwargs.get("num_items_in_batch") is not None)

    # -- the Trainer's events ----------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       lr_scheduler: Any = None, **kwargs: Any) -> None:
        if lr_scheduler is not self.lr_scheduler:
            raise ValueError("MLRSNetCallback drives the LR, so the Trainer's own scheduler must not: "
                             "Trainer(..., optimizers=(optimizer, mlrsnet.lr_scheduler), callbacks=[mlrsnet]) "
                             f"(the Trainer has {type(lr_scheduler).__name__})")
        options = dict(self.scheduler_kwargs)
        if not any(k in options for k in LENGTH_KEYS):
            epochs = state.num_train_epochs if args.max_steps <= 0 else None
            options.update(training_length(state.max_steps, epochs))
        self.scheduler = MLRSNetScheduler(self.optimizer, self.checkpoints, **options)
        if self.lr_scheduler._pending is not None:  # resume_from_checkpoint: scheduler.pt
            self.scheduler.load_state_dict(self.lr_scheduler._pending)
            self.lr_scheduler._pending = None
        self.lr_scheduler.last_epoch = self.scheduler.last_epoch
        if self._hook is not None:
            self._hook.remove()
        self._hook = model.register_forward_hook(self._forward_hook, with_kwargs=True)
        self._losses.clear()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.scheduler is None:
            return
        if not self._losses:
            raise RuntimeError("MLRSNetCallback saw no training loss in this step: the model's outputs carry "
                               "no 'loss' (a compute_loss_func or label smoothing takes the labels away); call "
                               "mlrsnet.record_loss(loss) from your compute_loss")
        losses = torch.stack(self._losses)
        if self._summed:
            world = args.world_size if args.average_tokens_across_devices else 1
            loss = losses.sum() * world
        else:
            loss = losses.mean()
        self._losses.clear()
        self.scheduler.step(loss)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
