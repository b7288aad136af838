"""L4: practical loss-based step-size adaptation (Rolinek & Martius, NeurIPS 2018).

L4 wraps a gradient method that supplies an update direction ``v`` and chooses the step
size so that a linear model of the loss predicts a fixed fraction of the gap to an
estimate of the attainable loss::

    eta_t = alpha * (L_t - gamma * L_min) / (g_hat_t . v_t + epsilon)
    w_{t+1} = w_t - eta_t * v_t

Details follow the official TensorFlow code (github.com/martius-lab/l4-optimizer,
``L4/L4.py``, classes ``L4General``, ``L4Mom``, ``L4Adam``, ``MomentumTransform``,
``AdamTransform``):

* ``L_min`` is set to ``init_factor * L_0`` at the first step and to ``min(L_min, L_t)``
  at every later step, *before* ``eta_t`` is computed; after the step it is relaxed,
  ``L_min <- (1 + 1/tau) * L_min`` (every step, including the first).
* ``g_hat`` is an exponential moving average of the gradient with time scale 10
  (decay ``1 - 1/10``), started at zero and bias-corrected by ``1 - decay**(t+1)``.
* L4Mom (``l4-mom``): ``v = g_hat`` (the same time-10 average).
* L4Adam (``l4-adam``): ``v = m_hat / (sqrt(s_hat) + 1e-4)`` with ``m_hat`` the time-10
  average of ``g``, ``s_hat`` the time-1000 average of ``g**2``, both bias-corrected the
  same way; note the Adam epsilon is 1e-4, added outside the square root.
* Defaults: ``alpha`` (fraction) 0.15, ``gamma`` (minloss_factor) 0.9, ``init_factor``
  0.75, ``tau`` (minloss_forget_time) 1000, ``epsilon`` 1e-12.

The recorded LR is ``eta_t``.  L4 brings its own momentum, so the task's momentum and
Nesterov flags are not used.  The task's weight decay is treated as what it is in the
task's SGD, an L2 penalty in the objective: ``g`` includes ``weight_decay * w`` and
``L`` includes ``weight_decay/2 * |w|^2`` (in the official code whatever regulariser the
user added to the loss enters both in the same way).  ``g`` is the gradient after the
loop's clipping, as in the official ``apply_gradients`` (gradients may be manipulated
before it is called).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from baselines._direction import (
    clone_all,
    dot,
    gradients_with_weight_decay,
    placed_like,
    require_keys,
    squared_norm,
)
from mlrsnet.errors import UserError
from mlrsnet.harness.contract import Method, OptimSettings, SearchDim, StepInfo, stateless_sgd

_COMMON_DEFAULTS: dict[str, Any] = {
    "fraction": 0.15,
    "minloss_factor": 0.9,
    "init_factor": 0.75,
    "minloss_forget_time": 1000.0,
    "epsilon": 1e-12,
    #: Time scale of the gradient average g_hat (decay 1 - 1/10 = 0.9).
    "grad_time": 10.0,
}


class _L4(Method):
    """Shared L4 machinery; subclasses choose the direction ``v``."""

    search_space: ClassVar[dict[str, SearchDim]] = {
        # The official README: good values lie in 0.1 < fraction < 0.3.
        "fraction": ("uniform", 0.1, 0.3),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        for key in ("grad_time", "minloss_forget_time") + self._time_keys():
            if not self.hparams[key] > 1:
                raise UserError(f"{self.name}: {key} must be > 1, got {self.hparams[key]}")
        self._step = 0
        self._min_loss = 0.0
        self._grad_avg: list[Tensor] | None = None
        self._direction_now: list[Tensor] | None = None  # computed in lr(), handed over by direction()
        self._placed = True

    @staticmethod
    def _time_keys() -> tuple[str, ...]:
        return ()

    # -- contract ---------------------------------------------------------------------------
    def build_optimizer(self, params: Sequence[nn.Parameter], optim: OptimSettings,
                        initial_lr: float = 0.0) -> torch.optim.Optimizer:
        return stateless_sgd(params, initial_lr)

    def lr(self, step: StepInfo) -> float:
        params = self.run.params
        if not self._placed:
            self._place(params)
            self._placed = True
        weight_decay = self.run.optim.weight_decay
        grads = gradients_with_weight_decay(params, weight_decay)
        loss = float(step.loss.detach())
        if weight_decay:
            loss += 0.5 * weight_decay * float(squared_norm([p.detach() for p in params]))

        h = self.hparams
        self._min_loss = h["init_factor"] * loss if self._step == 0 else min(self._min_loss, loss)

        self._grad_avg = _ema_update(self._grad_avg, grads, 1.0 - 1.0 / h["grad_time"])
        grad_estimate = torch._foreach_div(
            self._grad_avg, _bias_correction(h["grad_time"], self._step)
        )
        direction = self._direction(grads, grad_estimate)

        gap = loss - h["minloss_factor"] * self._min_loss
        eta = h["fraction"] * gap / (float(dot(grad_estimate, direction)) + h["epsilon"])

        self._min_loss *= 1.0 + 1.0 / h["minloss_forget_time"]
        self._step += 1
        self._direction_now = direction
        return eta

    def direction(self, step: StepInfo) -> list[Tensor]:
        """``v_t``, computed in :meth:`lr` (the step size ``eta_t`` needs it)."""
        direction, self._direction_now = self._direction_now, None
        if direction is None:
            raise RuntimeError(f"{self.name}: direction() called without lr() in the same step")
        return direction

    def _direction(self, grads: list[Tensor], grad_estimate: list[Tensor]) -> list[Tensor]:
        raise NotImplementedError

    def _place(self, params: Sequence[Tensor]) -> None:
        self._grad_avg = placed_like(self._grad_avg, params)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step, "min_loss": self._min_loss, "grad_avg": clone_all(self._grad_avg)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("step", "min_loss", "grad_avg"), self.name)
        self._step = int(state["step"])
        self._min_loss = float(state["min_loss"])
        self._grad_avg = clone_all(state["grad_avg"])
        self._placed = False


class L4Mom(_L4):
    name: ClassVar[str] = "l4-mom"
    description: ClassVar[str] = "L4 step size on a momentum direction (Rolinek & Martius 2018)"
    defaults: ClassVar[dict[str, Any]] = dict(_COMMON_DEFAULTS)

    def _direction(self, grads: list[Tensor], grad_estimate: list[Tensor]) -> list[Tensor]:
        # The official L4Mom uses a second time-10 average for v; it equals g_hat exactly.
        return grad_estimate


class L4Adam(_L4):
    name: ClassVar[str] = "l4-adam"
    description: ClassVar[str] = "L4 step size on an Adam direction (Rolinek & Martius 2018)"
    defaults: ClassVar[dict[str, Any]] = {
        **_COMMON_DEFAULTS,
        #: Adam direction: time scales of the first and second moments, and its epsilon.
        "adam_grad_time": 10.0,
        "adam_var_time": 1000.0,
        "adam_epsilon": 1e-4,
    }

    def __init__(self, **hparams: Any) -> None:
        self._adam_grad_avg: list[Tensor] | None = None
        self._sq_avg: list[Tensor] | None = None
        super().__init__(**hparams)

    @staticmethod
    def _time_keys() -> tuple[str, ...]:
        return ("adam_grad_time", "adam_var_time")

    def _direction(self, grads: list[Tensor], grad_estimate: list[Tensor]) -> list[Tensor]:
        h = self.hparams
        if h["adam_grad_time"] == h["grad_time"]:
            first = grad_estimate  # the official code keeps two identical averages
            self._adam_grad_avg = None
        else:
            self._adam_grad_avg = _ema_update(self._adam_grad_avg, grads, 1.0 - 1.0 / h["adam_grad_time"])
            first = torch._foreach_div(self._adam_grad_avg, _bias_correction(h["adam_grad_time"], self._step))
        squares = torch._foreach_mul(grads, grads)
        self._sq_avg = _ema_update(self._sq_avg, squares, 1.0 - 1.0 / h["adam_var_time"])
        second = torch._foreach_div(self._sq_avg, _bias_correction(h["adam_var_time"], self._step))
        torch._foreach_sqrt_(second)
        torch._foreach_add_(second, h["adam_epsilon"])
        return torch._foreach_div(first, second)

    def _place(self, params: Sequence[Tensor]) -> None:
        super()._place(params)
        self._adam_grad_avg = placed_like(self._adam_grad_avg, params)
        self._sq_avg = placed_like(self._sq_avg, params)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "adam_grad_avg": clone_all(self._adam_grad_avg),
            "sq_avg": clone_all(self._sq_avg),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("adam_grad_avg", "sq_avg"), self.name)
        super().load_state_dict(state)
        self._adam_grad_avg = clone_all(state["adam_grad_avg"])
        self._sq_avg = clone_all(state["sq_avg"])


def _ema_update(average: list[Tensor] | None, values: list[Tensor], decay: float) -> list[Tensor]:
    """``avg <- decay * avg + (1 - decay) * value``, the average starting at zero."""
    if average is None:
        return torch._foreach_mul(values, 1.0 - decay)
    torch._foreach_mul_(average, decay)
    torch._foreach_add_(average, values, alpha=1.0 - decay)
    return average


def _bias_correction(time_scale: float, step: int) -> float:
    """``1 - decay**(step + 1)`` with ``decay = 1 - 1/time_scale`` (the official ``time_factor``)."""
    return -math.expm1((step + 1) * math.log1p(-1.0 / time_scale))
