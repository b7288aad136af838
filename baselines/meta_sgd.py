"""Meta-SGD as the MLR-SNet supplement contrasts it: one learned LR per step.

The LR of step ``t`` is its own parameter ``alpha_k`` with ``k = t // interval``
(``interval=1``: ``alpha_1..alpha_T``, T the run's total steps).  It is trained with exactly
MLR-SNet's machinery (:class:`baselines._lookahead.LookaheadMetaMethod`): every ``t_val`` steps,
the LR in use gets one Adam step (same lr and weight decay) on the held-out meta loss at
the look-ahead weights ``w - alpha_k * d``.  The number of meta-parameters therefore grows
with the length of training, where MLR-SNet's stays at 11,776; ``extra_info`` records it.

Two choices the supplement leaves open, stated here:

* an ``alpha_k`` not yet reached starts from the latest value of the one before it
  (``alpha_1`` from ``lr``), so what the meta updates learned carries forward instead of
  every untrained step falling back to the initial LR;
* each ``alpha_k`` has its own Adam moments and step count (PyTorch's Adam applied to that
  one entry), so an entry's first update is a fresh Adam step however late it comes;
* every learned LR stays positive.  With ``positivity="log"`` (default) the free parameter
  is ``rho_k = log alpha_k`` and ``alpha_k = exp(rho_k)``: Adam's moments and step count
  belong to ``rho_k`` and see its gradient ``alpha_k * (dL_meta/dalpha_k + wd * alpha_k)``
  (the meta loss plus the L2 penalty ``wd/2 * alpha_k**2`` of ``hyper_weight_decay``, the same
  objective as without the constraint), so a hypergradient that keeps pushing an LR down
  shrinks it geometrically and never crosses 0.  A step in ``rho`` is relative (Adam's first
  step moves ``alpha`` by the factor ``exp(+-hyper_lr)``), so ``hyper_lr=None`` means 1e-2 here:
  MLR-SNet's meta LR 1e-3 at the image base LR 0.1, as a fraction (1e-3 / 0.1), the same
  first step as the unconstrained rule on images and a usable one at text's base LR 20.
  ``positivity="project"`` keeps Adam on ``alpha_k`` itself (hyper_lr None: 1e-3) and
  projects each updated ``alpha_k`` onto ``[min_lr_ratio * lr, inf)``; its moments are those of
  the unprojected hypergradient (projected Adam).  Neither the supplement nor the official
  code (which has no Meta-SGD) says which; ``extra_info`` records the choice and the smallest
  learned LR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from mlrsnet.baselines._lookahead import LookaheadMetaMethod

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import HParam, RunContext, StepInfo

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
POSITIVITY = ("log", "project")
#: hyper_lr when it is None, per parametrisation (see the module docstring).
DEFAULT_HYPER_LR = {"log": 1e-2, "project": 1e-3}


class MetaSGD(LookaheadMetaMethod):
    """Hyper-parameters: ``lr`` (the first LR; None: the task's base LR), ``interval`` (steps that
    share one alpha), ``positivity`` / ``min_lr_ratio`` (how the LRs stay positive), and the
    shared ``t_val``, ``hyper_lr`` (None: per ``positivity``), ``hyper_weight_decay``."""

    name: ClassVar[str] = "meta-sgd"
    description: ClassVar[str] = "Meta-SGD: a learned LR per step (parameters grow with T)"
    defaults: ClassVar[dict[str, Any]] = {
        **LookaheadMetaMethod.defaults,
        "lr": None,
        "interval": 1,
        "hyper_lr": None,
        "positivity": "log",
        #: positivity="project": the floor, as a fraction of the first LR.
        "min_lr_ratio": 1e-3,
    }
    hparam_specs: ClassVar[dict[str, HParam]] = {
        **LookaheadMetaMethod.hparam_specs,
        "lr": HParam("number", low=0.0, low_open=True, allow_none=True),
        "interval": HParam("int", low=1),
        "hyper_lr": HParam("number", low=0.0, low_open=True, allow_none=True),
        "positivity": HParam("str", choices=POSITIVITY),
        "min_lr_ratio": HParam("number", low=0.0, low_open=True),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        if int(self.hparams["interval"]) < 1:
            raise UserError("method 'meta-sgd': interval must be a positive number of steps")
        self.interval = int(self.hparams["interval"])
        if self.hparams["positivity"] not in POSITIVITY:
            raise UserError(f"method 'meta-sgd': positivity must be one of {', '.join(POSITIVITY)}, "
                            f"got {self.hparams['positivity']!r}")
        if not self.hparams["min_lr_ratio"] > 0:
            raise UserError("method 'meta-sgd': min_lr_ratio must be > 0")
        self.positivity = self.hparams["positivity"]
        beta = self.hparams["hyper_lr"]
        self.hyper_lr = float(beta) if beta is not None else DEFAULT_HYPER_LR[self.positivity]
        self.alphas = torch.zeros(0, dtype=torch.float64)
        self.filled = 0  # alphas[:filled] have been reached
        self.last_hypergradient = float("nan")

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        total = run.horizon.steps_per_epoch * run.horizon.epochs
        count = max(1, math.ceil(total / self.interval))
        init = self.hparams["lr"]
        self.init_lr = float(init) if init is not None else float(run.task.base_lr)
        if not self.init_lr > 0:
            raise UserError(f"method 'meta-sgd': the first LR must be > 0, got {self.init_lr}")
        self.alphas = torch.zeros(count, dtype=torch.float64)
        self._m = torch.zeros(count, dtype=torch.float64)
        self._v = torch.zeros(count, dtype=torch.float64)
        self._updates = torch.zeros(count, dtype=torch.int64)
        self.filled = 0

    def index(self, step: StepInfo) -> int:
        return min(step.step // self.interval, len(self.alphas) - 1)

    def _reach(self, k: int) -> None:
        """Entries up to ``k`` start from the latest value before them."""
        if k >= self.filled:
            start = float(self.alphas[self.filled - 1]) if self.filled else self.init_lr
            self.alphas[self.filled:k + 1] = start
            self.filled = k + 1

    def lr(self, step: StepInfo) -> float:
        k = self.index(step)
        self._reach(k)
        if self.is_meta_step(step):
            alpha = self.alphas[k].clone().requires_grad_(True)
            self.lookahead_backward(alpha)
            assert alpha.grad is not None
            self.last_hypergradient = float(alpha.grad)
            self._adam_entry(k, self.last_hypergradient)
        return float(self.alphas[k])

    def _adam_entry(self, k: int, grad: float) -> None:
        """``torch.optim.Adam`` (no amsgrad) applied to entry ``k``'s free parameter alone:
        ``rho_k = log alpha_k`` (positivity "log") or ``alpha_k`` then projected ("project")."""
        b1, b2 = ADAM_BETAS
        alpha = float(self.alphas[k])
        g = grad + self.hparams["hyper_weight_decay"] * alpha  # d/dalpha of meta loss + wd/2 alpha^2
        if self.positivity == "log":
            g *= alpha  # chain rule through alpha = exp(rho)
        self._updates[k] += 1
        n = int(self._updates[k])
        self._m[k] = b1 * self._m[k] + (1 - b1) * g
        self._v[k] = b2 * self._v[k] + (1 - b2) * g * g
        m_hat = self._m[k] / (1 - b1 ** n)
        v_hat = self._v[k] / (1 - b2 ** n)
        step = float(self.hyper_lr * m_hat / (v_hat.sqrt() + ADAM_EPS))
        if self.positivity == "log":
            self.alphas[k] = math.exp(math.log(alpha) - step)
        else:
            self.alphas[k] = max(alpha - step, self.hparams["min_lr_ratio"] * self.init_lr)

    def extra_info(self) -> dict[str, Any]:
        reached = self.alphas[:self.filled]
        return {"meta_parameters": int(len(self.alphas)), "t_val": self.t_val,
                "interval": self.interval, "trained_alphas": int((self._updates > 0).sum())
                if len(self.alphas) else 0, "positivity": self.positivity, "meta_sgd_hyper_lr": self.hyper_lr,
                "min_learned_lr": float(reached.min()) if len(reached) else None, **self._counters()}

    def state_dict(self) -> dict[str, Any]:
        return {"alphas": self.alphas.clone(), "m": self._m.clone(), "v": self._v.clone(),
                "updates": self._updates.clone(), "filled": self.filled, "init_lr": self.init_lr,
                "last_hypergradient": self.last_hypergradient, **self._counters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["alphas"]) != len(self.alphas):
            raise ValueError(f"state holds {len(state['alphas'])} learned LRs, this run needs {len(self.alphas)}")
        self.alphas = state["alphas"].clone()
        self._m, self._v = state["m"].clone(), state["v"].clone()
        self._updates = state["updates"].clone()
        self.filled = int(state["filled"])
        self.init_lr = float(state["init_lr"])
        self.last_hypergradient = float(state["last_hypergradient"])
        self._load_counters(state)
