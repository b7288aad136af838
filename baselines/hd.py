"""HD: online learning-rate adaptation by hypergradient descent (Baydin et al., ICLR 2018).

Before each step the single global LR moves along the hypergradient of the current loss
with respect to the LR used at the previous step::

    g_t      = grad L_t(w_t) + weight_decay * w_t        (after the loop's clipping)
    alpha_t  = alpha_{t-1} + beta * (g_t . u_{t-1})       (u_{-1} = 0: no move at step 0)
    u_t      = g_t                                        SGD-HD
             = b_t,  b_t = mu * b_{t-1} + g_t (b_0 = g_0) SGDM-HD (heavy ball)
             = g_t + mu * b_t                             SGDN-HD (Nesterov)
    w_{t+1}  = w_t - alpha_t * u_t

``u`` is the update direction actually applied, so for the momentum variants the
hypergradient uses the momentum direction, as the official ``SGDHD`` optimiser does
(github.com/gbaydin/hypergradient-descent, ``hypergrad/sgd_hd.py``: ``h = grad . grad_prev``,
``lr += hypergrad_lr * h``, ``grad_prev`` = the applied direction, momentum buffer
initialised to the first gradient, dampening 0).

Defaults (the paper's SGD/SGDN experiments, official ``run.sh`` and ``train.py``): initial
LR ``alpha_0 = 1e-3``, hyper-LR ``beta = 1e-3``, momentum 0.9 with Nesterov for SGDN-HD.
Here momentum and Nesterov default to the task's optimiser settings, so the same method
is SGD-HD on a plain-SGD task and SGDN-HD on a Nesterov task; set ``momentum``/``nesterov``
to force a variant.

The published method lets the LR go negative; the trace records it as it is.
``clamp_nonneg=True`` (opt-in, not in the paper) clips the LR at 0 after each move.
"""

from __future__ import annotations

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
)
from mlrsnet.errors import UserError
from mlrsnet.harness.contract import Method, OptimSettings, RunContext, SearchDim, StepInfo, stateless_sgd


class HypergradientDescent(Method):
    name: ClassVar[str] = "hd"
    description: ClassVar[str] = "Hypergradient descent on the global LR (Baydin et al. 2018)"
    defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "hyper_lr": 1e-3,
        #: None: the task's momentum / Nesterov flag.
        "momentum": None,
        "nesterov": None,
        "clamp_nonneg": False,
    }
    search_space: ClassVar[dict[str, SearchDim]] = {
        "lr": ("loguniform", 1e-4, 1e-1),
        "hyper_lr": ("loguniform", 1e-6, 1e-1),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        if not self.hparams["hyper_lr"] >= 0:
            raise UserError(f"hd: hyper_lr must be >= 0, got {self.hparams['hyper_lr']}")
        momentum = self.hparams["momentum"]
        if momentum is not None and not 0 <= momentum < 1:
            raise UserError(f"hd: momentum must lie in [0, 1), got {momentum}")
        self._lr = float(self.hparams["lr"])
        self._previous_direction: list[Tensor] | None = None
        self._momentum_buffer: list[Tensor] | None = None
        self._direction_now: list[Tensor] | None = None  # computed in lr(), handed over by direction()
        self._placed = True

    # -- the variant actually run ----------------------------------------------------------
    def _momentum(self) -> float:
        m = self.hparams["momentum"]
        return float(self.run.optim.momentum if m is None else m)

    def _nesterov(self) -> bool:
        n = self.hparams["nesterov"]
        return bool(self.run.optim.nesterov if n is None else n) and self._momentum() > 0

    # -- contract ---------------------------------------------------------------------------
    def build_optimizer(self, params: Sequence[nn.Parameter], optim: OptimSettings,
                        initial_lr: float = 0.0) -> torch.optim.Optimizer:
        return stateless_sgd(params, initial_lr)

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        if self.hparams["nesterov"] and self._momentum() == 0:
            raise UserError("hd: nesterov=True needs a momentum > 0 (task or hparam)")

    def lr(self, step: StepInfo) -> float:
        params = self.run.params
        if not self._placed:
            self._previous_direction = placed_like(self._previous_direction, params)
            self._momentum_buffer = placed_like(self._momentum_buffer, params)
            self._placed = True
        grads = gradients_with_weight_decay(params, self.run.optim.weight_decay)

        if self._previous_direction is not None:
            self._lr += self.hparams["hyper_lr"] * float(dot(grads, self._previous_direction))
            if self.hparams["clamp_nonneg"]:
                self._lr = max(self._lr, 0.0)

        direction = self._direction(grads)
        self._direction_now = direction
        self._previous_direction = direction
        return self._lr

    def direction(self, step: StepInfo) -> list[Tensor]:
        """``u_t``, computed in :meth:`lr` (the LR's move needs ``g_t`` before ``u_t``)."""
        direction, self._direction_now = self._direction_now, None
        if direction is None:
            raise RuntimeError(f"{self.name}: direction() called without lr() in the same step")
        return direction

    def _direction(self, grads: list[Tensor]) -> list[Tensor]:
        mu = self._momentum()
        if mu == 0:
            return grads
        if self._momentum_buffer is None:
            self._momentum_buffer = [g.clone() for g in grads]
        else:
            torch._foreach_mul_(self._momentum_buffer, mu)
            torch._foreach_add_(self._momentum_buffer, grads)
        if self._nesterov():
            return torch._foreach_add(grads, self._momentum_buffer, alpha=mu)
        return [b.clone() for b in self._momentum_buffer]

    def extra_info(self) -> dict[str, Any]:
        if self.run is None:
            return {}
        return {"hd_momentum": self._momentum(), "hd_nesterov": self._nesterov()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self._lr,
            "previous_direction": clone_all(self._previous_direction),
            "momentum_buffer": clone_all(self._momentum_buffer),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("lr", "previous_direction", "momentum_buffer"), self.name)
        self._lr = float(state["lr"])
        self._previous_direction = clone_all(state["previous_direction"])
        self._momentum_buffer = clone_all(state["momentum_buffer"])
        self._placed = False
