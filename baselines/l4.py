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
Nesterov flags are not used.

Weight decay (``weight_decay_mode``).  L4 has no weight-decay logic: the TF code takes the
user's loss tensor for ``L`` and its gradient for ``g`` (``compute_gradients(loss)``), and
the PyTorch wrapper linked from the official repository (iovdin/l4-pytorch, ``l4.py``) takes
the mini-batch loss passed to ``step(loss)``, averages the raw ``p.grad`` for ``g_hat`` and
reads the wrapped optimiser's step with the parameters set to zero, which cancels that
optimiser's ``weight_decay * w`` term.  So with the task's SGD(weight_decay) wrapped as that
code is used, the decay has no effect:

* ``"ignored"`` (default, the official PyTorch wrapper): ``L`` = the mini-batch loss,
  ``g`` = its gradient; the task's weight decay is not applied;
* ``"gradient"``: ``g`` includes ``weight_decay * w`` (in ``g_hat`` and in the direction, as
  the task's SGD would), ``L`` stays the mini-batch loss;
* ``"objective"`` (this suite's earlier rule; what the TF code does when the user adds the L2
  penalty to the loss): ``g`` includes ``weight_decay * w`` and ``L`` includes
  ``weight_decay/2 * |w|^2``, which at paper scale is of the order of the cross-entropy or
  larger, so it dominates the gap ``L - gamma L_min`` late in training.

In the last two the decay term is added after the loop's clipping, as the task's SGD adds
it (a TF user clipping the gradient of the penalised loss would clip it too).

Clipping (``clipped_gradient``).  Both official codes take the gradient as the user leaves it
(the TF README: gradients may be manipulated between ``compute_gradients`` and
``apply_gradients``; the wrapper reads ``p.grad``), so by default L4 reads the gradient after
the loop's ``clip_grad_norm`` (text tasks: 0.25).  Since ``L`` is not clipped, clipping by a
factor ``c < 1`` scales ``g_hat`` and ``v`` by ``c``, ``eta`` by ``1/c**2`` and the update by
``1/c``: the clip makes L4's step larger.  ``clipped_gradient=False`` reads the gradient
before the clip (the loop's clip factor undone), so the clip has no effect on L4's update.

Measured on ``mini`` (``mlrsnet-bench train --task T --method l4-mom --profile mini
--hparam ...``, seed 0, one run each, 2 shared CPU cores, wall times under varying load):

* ResNet-18/CIFAR-10 (weight decay 5e-4), final test accuracy: ``objective`` 35.6 % (25 s),
  ``gradient`` 38.3 % (51 s), ``ignored`` 26.7 % (44 s);
* 2-layer LSTM/PTB (clip 0.25, weight decay 5e-6), final test perplexity: clipped (default)
  21,010,374 (102 s; the enlarged steps wreck the run), unclipped 719.0 (85 s).

The defaults stay the official behaviour; the better-measured alternatives are one
``--hparam`` away (``weight_decay_mode=gradient``, ``clipped_gradient=false``) and the
choice is recorded in ``runs.method_info`` (``l4_weight_decay_mode``, ``l4_clipped_gradient``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from mlrsnet.baselines._direction import (
    clone_all,
    dot,
    gradients_with_weight_decay,
    placed_like,
    require_keys,
    squared_norm,
)
from torch import Tensor, nn

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import (
    DirectionMethod,
    HParam,
    SearchDim,
    StepInfo,
)

_COMMON_DEFAULTS: dict[str, Any] = {
    "fraction": 0.15,
    "minloss_factor": 0.9,
    "init_factor": 0.75,
    "minloss_forget_time": 1000.0,
    "epsilon": 1e-12,
    #: Time scale of the gradient average g_hat (decay 1 - 1/10 = 0.9).
    "grad_time": 10.0,
    #: How the task's weight decay enters (see the module docstring): "ignored" (the official
    #: PyTorch wrapper), "gradient" (wd * w in g only) or "objective" (in g and in L).
    "weight_decay_mode": "ignored",
    #: True: L4 reads the gradient after the loop's clipping (official); False: before it.
    "clipped_gradient": True,
}

WEIGHT_DECAY_MODES = ("ignored", "gradient", "objective")

_TIME = HParam("number", low=1.0, low_open=True)
_COMMON_SPECS: dict[str, HParam] = {
    "fraction": HParam("number", low=0.0, low_open=True),
    "minloss_factor": HParam("number", low=0.0),
    "init_factor": HParam("number", low=0.0),
    "minloss_forget_time": _TIME,
    "epsilon": HParam("number", low=0.0),
    "grad_time": _TIME,
    "weight_decay_mode": HParam("str", choices=WEIGHT_DECAY_MODES),
    "clipped_gradient": HParam("bool"),
}


class _L4(DirectionMethod):
    """Shared L4 machinery; subclasses choose the direction ``v``."""

    #: whether the state tensors sit on the parameters' device yet (re-placed after a resume)
    transient: ClassVar[tuple[str, ...]] = ("_placed",)
    search_space: ClassVar[dict[str, SearchDim]] = {
        # The official README: good values lie in 0.1 < fraction < 0.3.
        "fraction": ("uniform", 0.1, 0.3),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        for key in ("grad_time", "minloss_forget_time") + self._time_keys():
            if not self.hparams[key] > 1:
                raise UserError(f"{self.name}: {key} must be > 1, got {self.hparams[key]}")
        if self.hparams["weight_decay_mode"] not in WEIGHT_DECAY_MODES:
            raise UserError(f"{self.name}: weight_decay_mode must be one of {', '.join(WEIGHT_DECAY_MODES)}, "
                            f"got {self.hparams['weight_decay_mode']!r}")
        self._unclip = 1.0  # 1 / the loop's clipping factor of this step (clipped_gradient=False)
        self._step = 0
        self._min_loss = 0.0
        self._grad_avg: list[Tensor] | None = None
        self._direction_now: list[Tensor] | None = None  # computed in lr(), handed over by direction()
        self._placed = True

    @staticmethod
    def _time_keys() -> tuple[str, ...]:
        return ()

    # -- contract ---------------------------------------------------------------------------
    def backward(self, loss: Tensor, params: Sequence[nn.Parameter]) -> None:
        loss.backward()
        clip = self.run.task.optim.clip_grad_norm
        if clip and not self.hparams["clipped_gradient"]:
            # the factor clip_grad_norm_ is about to apply: min(1, clip / (norm + 1e-6))
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
            self._unclip = 1.0 / min(1.0, clip / (norm + 1e-6))
        else:
            self._unclip = 1.0

    def _weight_decay(self) -> float:
        return 0.0 if self.hparams["weight_decay_mode"] == "ignored" else self.run.task.optim.weight_decay

    def lr(self, step: StepInfo) -> float:
        params = self.run.params
        if not self._placed:
            self._place(params)
            self._placed = True
        weight_decay = self._weight_decay()
        if weight_decay or self._unclip != 1.0:
            grads = gradients_with_weight_decay(params, weight_decay, scale=self._unclip)
        else:  # only read below: no copy needed
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach() for p in params]
        loss = float(step.loss.detach())
        if weight_decay and self.hparams["weight_decay_mode"] == "objective":
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

    def extra_info(self) -> dict[str, Any]:
        if self.run is None:
            return {}
        return {"l4_weight_decay_mode": self.hparams["weight_decay_mode"],
                "l4_weight_decay": self._weight_decay(),
                "l4_clipped_gradient": bool(self.hparams["clipped_gradient"]),
                "l4_clip_grad_norm": self.run.task.optim.clip_grad_norm}

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
    hparam_specs: ClassVar[dict[str, HParam]] = dict(_COMMON_SPECS)

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
    hparam_specs: ClassVar[dict[str, HParam]] = {
        **_COMMON_SPECS, "adam_grad_time": _TIME, "adam_var_time": _TIME,
        "adam_epsilon": HParam("number", low=0.0),
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
