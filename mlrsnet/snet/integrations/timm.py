"""MLR-SNet with timm's scheduler interface: ``step_update(num_updates, metric)`` reads the loss.

timm's schedulers are stepped per update with ``step_update(num_updates, metric=None)`` and
per epoch with ``step(epoch, metric=None)``.  :class:`MLRSNetTimmScheduler` is a
``timm.scheduler.scheduler.Scheduler`` that sets the LR in ``step_update`` from ``metric``,
which must be the loss of the batch the next optimizer step is taken on, so call it before
that step (timm's ``train.py`` calls it after the step, with the running mean loss: move the
call up, or the first call warns that every LR lags one step)::

    loss = loss_fn(model(x), y)
    lr_scheduler.step_update(num_updates, metric=loss)  # before the update it sizes
    loss_scaler(loss, optimizer)                         # or loss.backward(); optimizer.step()
    num_updates += 1

``step(epoch)`` at the end of an epoch changes nothing (the schedule is per update; the
epoch number is never read as a loss), and ``step_update`` without a metric is refused.
``state_dict``/``load_state_dict`` are MLRSNetScheduler's (timm's own saving of the whole
``__dict__`` would pickle the networks).  Keyword arguments go to
:class:`~mlrsnet.snet.scheduler.MLRSNetScheduler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from timm.scheduler.scheduler import Scheduler

from mlrsnet.snet.scheduler import MLRSNetScheduler


class MLRSNetTimmScheduler(Scheduler):
    """A timm ``Scheduler`` driven by the training loss (module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer, checkpoints: Any = "official", **scheduler_kwargs: Any) -> None:
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=False)
        #: The scheduler doing the work.
        self.mlrsnet = MLRSNetScheduler(optimizer, checkpoints, **scheduler_kwargs)

    def step_update(self, num_updates: int, metric: Any = None) -> None:
        """Set the LR of the next update from ``metric``, that update's batch loss."""
        if metric is None:
            raise TypeError("MLRSNetTimmScheduler.step_update(num_updates, metric) needs metric=the loss "
                            "of the batch the next optimizer step is taken on, called before that step "
                            "(to resume, load the scheduler's state_dict)")
        if isinstance(num_updates, bool) or not isinstance(num_updates, int) or num_updates < 0:
            raise TypeError(f"num_updates must be the number of optimizer updates so far (an int >= 0), "
                            f"not {num_updates!r}")
        self.mlrsnet.step(metric)

    def step(self, epoch: int, metric: Any = None) -> None:
        """End of an epoch: nothing to do (MLR-SNet steps per update, in :meth:`step_update`)."""

    def _get_lr(self, t: int) -> list[float]:
        raise TypeError("MLR-SNet's LR depends on the loss: call step_update(num_updates, metric=loss)")

    def get_last_lr(self) -> list[float]:
        return [float(lr) for lr in self.mlrsnet.get_last_lr()]

    def state_dict(self) -> dict[str, Any]:
        return self.mlrsnet.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.mlrsnet.load_state_dict(state_dict)
