"""HD: online learning-rate adaptation by hypergradient descent (Baydin et al., ICLR 2018).

Before each step the single global LR moves along the hypergradient of the current loss
with respect to the LR used at the previous step::

    g_t      = grad L_t(w_t) + weight_decay * w_t        (after the loop's clipping)
    alpha_t  = alpha_{t-1} + beta * (g_t . u_{t-1})       (u_{-1} = 0: no move at step 0)
    w_{t+1}  = w_t - alpha_t * u_t

``u_t`` is the update direction actually applied (per unit LR).  Two methods share this
code; each follows one file of github.com/gbaydin/hypergradient-descent:

``hd`` (``hypergrad/sgd_hd.py``, ``SGDHD``)::

    u_t = g_t                                        SGD-HD
        = b_t,  b_t = mu * b_{t-1} + g_t (b_0 = g_0) SGDM-HD (heavy ball, dampening 0)
        = g_t + mu * b_t                             SGDN-HD (Nesterov)

  one global dot product ``h = g_t . grad_prev`` over all parameters, ``lr += hypergrad_lr * h``
  before the step, ``grad_prev`` = the applied direction (the momentum buffer / the
  Nesterov direction, not the raw gradient), ``g_t`` with the L2 weight decay added.
  Momentum and Nesterov default to the task's optimiser settings, so the same method is
  SGD-HD on a plain-SGD task and SGDN-HD on a Nesterov task; set ``momentum``/``nesterov``
  to force a variant.

``hd-adam`` (``hypergrad/adam_hd.py``, ``AdamHD``), re-derived from that file::

    g_t  = grad L_t(w_t) + weight_decay * w_t           (L2 decay, in the moments too)
    m_t  = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t**2   (m_0 = v_0 = 0)
    u_t  = m_t / (sqrt(v_t) + eps) * sqrt(1 - b2**t) / (1 - b1**t)          (t = 1, 2, ...)
    h_t  = g_t . u_{t-1}      from the second step on (the previous Adam update direction,
                              with the previous step's bias corrections; eps outside the root)
    alpha <- alpha + beta * h_t,  then  w <- w - alpha * u_t

  The official loop visits the parameter tensors in order and moves the group's LR *inside*
  that loop (``group['lr'] += hypergrad_lr * h`` per tensor), so tensor ``i`` steps with the
  LR already moved by the hypergradients of tensors ``0..i``.  That is the default
  (``lr_update="per-tensor"``): the recorded LR is the one the last tensor used (what
  ``group['lr']`` holds after the step), and tensor ``i``'s direction is scaled by
  ``alpha_i / alpha`` so that ``p - alpha * d`` is exactly its official step (a step whose
  final LR is exactly 0 therefore moves nothing).  ``lr_update="global"`` moves the LR once
  by ``beta * g_t . u_{t-1}`` over all tensors (the paper's Algorithm, as in ``hd``).
  The official code skips a tensor without gradient; here it counts as a zero gradient
  (every parameter of this suite's models gets one).  The official LR becomes a float32
  tensor after its first move (a Python float plus a 0-d tensor); here it stays a float.

Defaults.  Images (the paper's experiments, official ``run.sh`` and ``train.py``):
``hd``: initial LR ``alpha_0 = 1e-3``, hyper-LR ``beta = 1e-3``; ``hd-adam``:
``alpha_0 = 1e-3``, ``beta = 1e-8`` (``run.sh``'s VGG/CIFAR-10 value, also ``AdamHD``'s
default; 1e-7 for logreg/MLP), betas (0.9, 0.999), eps 1e-8.

Language models: neither the paper nor the official code has a language-model setting (only
logreg, MLP and VGG on MNIST/CIFAR-10).  These tasks train SGD at base LR 20 with clipping
0.25, where ``hd``'s image values cannot get there: with ``|g| <= 0.25`` the LR moves by at
most ``1e-3 * 0.25**2`` per step, about 8 over a whole paper run (124k steps).  So ``lr`` and
``hyper_lr`` default to ``None``, a per-kind rule: images keep the paper's values; on text
``hd`` starts from the task's base LR (``run.task.base_lr``) and takes ``hyper_lr = (beta/alpha_0
of the paper = 1) * alpha_0``, which keeps the paper's relative move per step,
``(alpha_t - alpha_{t-1}) / alpha_0 = (beta/alpha_0) g_t . u_{t-1}``, at any LR scale (our
choice; recorded in ``runs.method_info`` as ``hd_lr_rule`` / ``hd_hyper_lr_rule``).
``hd-adam`` keeps the paper's values on text too: Adam's direction does not scale with the
gradient, so its LR regime (1e-3) does not depend on the SGD base LR.  ``Method.space(kind)``
gives per-kind search ranges that contain each kind's default.

The published method lets the LR go negative; the trace records it as it is.
``clamp_nonneg=True`` (opt-in, not in the paper) clips the LR at 0 after each move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from mlrsnet.baselines._direction import (
    clone_all,
    dot,
    gradients_with_weight_decay,
    placed_like,
    require_keys,
)
from torch import Tensor

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import (
    DirectionMethod,
    HParam,
    RunContext,
    SearchDim,
    StepInfo,
)

LR_UPDATES = ("per-tensor", "global")

_COMMON_SPECS: dict[str, HParam] = {
    "lr": HParam("number", low=0.0, low_open=True, allow_none=True),
    "hyper_lr": HParam("number", low=0.0, allow_none=True),
    "clamp_nonneg": HParam("bool"),
}


class _HypergradientMethod(DirectionMethod):
    """What SGD-HD and Adam-HD share: the LR's state and per-kind defaults, the hand-over of
    the direction, resume.  A subclass computes the LR's move and the direction."""

    #: whether the state tensors sit on the parameters' device yet (re-placed after a resume)
    transient: ClassVar[tuple[str, ...]] = ("_placed",)
    #: The paper's values on images (``run.sh``).
    paper_lr: ClassVar[float] = 1e-3
    paper_hyper_lr: ClassVar[float] = 1e-3
    search_spaces: ClassVar[dict[str, dict[str, SearchDim]]] = {}
    _state_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        beta = self.hparams["hyper_lr"]
        if beta is not None and not beta >= 0:
            raise UserError(f"{self.name}: hyper_lr must be >= 0, got {beta}")
        self._lr: float | None = None  # set by bind() (or a restored state)
        self._hyper_lr = 0.0
        self._previous_direction: list[Tensor] | None = None
        self._direction_now: list[Tensor] | None = None  # computed in lr(), handed over by direction()
        self._placed = True

    # -- the per-kind rule for lr / hyper_lr = None ------------------------------------------
    def _text_lr(self) -> float:
        """The initial LR on a text task when ``lr`` is None."""
        return self.paper_lr

    def _text_hyper_lr(self, lr0: float) -> float:
        return self.paper_hyper_lr

    def _lr_rule(self) -> str:
        if self.hparams["lr"] is not None:
            return "given"
        return "task base LR (text)" if self.run.task.kind == "text" and self._text_lr() != self.paper_lr \
            else "paper"

    def _hyper_lr_rule(self) -> str:
        if self.hparams["hyper_lr"] is not None:
            return "given"
        return "paper beta/alpha_0 x initial LR (text)" if self.run.task.kind == "text" and \
            self._hyper_lr != self.paper_hyper_lr else "paper"

    # -- contract ---------------------------------------------------------------------------
    def bind(self, run: RunContext) -> None:
        super().bind(run)
        lr0, beta = self.hparams["lr"], self.hparams["hyper_lr"]
        text = run.task.kind == "text"
        lr0 = float(lr0) if lr0 is not None else (self._text_lr() if text else self.paper_lr)
        self._initial = lr0
        self._hyper_lr = float(beta) if beta is not None else (
            self._text_hyper_lr(lr0) if text else self.paper_hyper_lr)
        if self._lr is None:  # a state restored before bind keeps its LR
            self._lr = lr0

    def lr(self, step: StepInfo) -> float:
        params = self.run.params
        if not self._placed:
            self._place(params)
            self._placed = True
        grads = gradients_with_weight_decay(params, self.run.task.optim.weight_decay)
        self._direction_now = self._step(grads)
        return self._lr

    def _step(self, grads: list[Tensor]) -> list[Tensor]:
        """Move ``self._lr`` with ``grads`` (= g_t) and return the direction to apply."""
        raise NotImplementedError

    def _move(self, h: float) -> float:
        self._lr += self._hyper_lr * h
        if self.hparams["clamp_nonneg"]:
            self._lr = max(self._lr, 0.0)
        return self._lr

    def direction(self, step: StepInfo) -> list[Tensor]:
        """``u_t``, computed in :meth:`lr` (the LR's move needs ``g_t`` before ``u_t``)."""
        direction, self._direction_now = self._direction_now, None
        if direction is None:
            raise RuntimeError(f"{self.name}: direction() called without lr() in the same step")
        return direction

    def extra_info(self) -> dict[str, Any]:
        if self.run is None:
            return {}
        return {"hd_initial_lr": self._initial, "hd_lr_rule": self._lr_rule(),
                "hd_hyper_lr": self._hyper_lr, "hd_hyper_lr_rule": self._hyper_lr_rule(),
                "hd_weight_decay": self.run.task.optim.weight_decay,
                "hd_clip_grad_norm": self.run.task.optim.clip_grad_norm}

    def _place(self, params: Sequence[Tensor]) -> None:
        self._previous_direction = placed_like(self._previous_direction, params)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self._lr, "previous_direction": clone_all(self._previous_direction)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("lr", "previous_direction") + self._state_keys, self.name)
        self._lr = float(state["lr"])
        self._previous_direction = clone_all(state["previous_direction"])
        self._placed = False


class HypergradientDescent(_HypergradientMethod):
    """SGD-HD / SGDM-HD / SGDN-HD (``hypergrad/sgd_hd.py``)."""

    name: ClassVar[str] = "hd"
    description: ClassVar[str] = "Hypergradient descent on the global LR (Baydin et al. 2018)"
    defaults: ClassVar[dict[str, Any]] = {
        #: None: per kind (images: the paper's 1e-3; text: the task's base LR).
        "lr": None,
        #: None: per kind (images: the paper's 1e-3; text: the initial LR x the paper's beta/alpha_0).
        "hyper_lr": None,
        #: None: the task's momentum / Nesterov flag.
        "momentum": None,
        "nesterov": None,
        "clamp_nonneg": False,
    }
    search_space: ClassVar[dict[str, SearchDim]] = {
        "lr": ("loguniform", 1e-4, 1e-1),
        "hyper_lr": ("loguniform", 1e-6, 1e-1),
    }
    search_spaces: ClassVar[dict[str, dict[str, SearchDim]]] = {
        "image": search_space,
        # base LR 20 and hyper-LR 20 inside; the paper's text LR range for MultiStep is [1e-2, 20]
        "text": {"lr": ("loguniform", 1e-1, 40.0), "hyper_lr": ("loguniform", 1e-2, 1e2)},
    }
    _state_keys: ClassVar[tuple[str, ...]] = ("momentum_buffer",)
    hparam_specs: ClassVar[dict[str, HParam]] = {
        **_COMMON_SPECS,
        "momentum": HParam("number", low=0.0, high=1.0, high_open=True, allow_none=True),
        "nesterov": HParam("bool", allow_none=True),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        momentum = self.hparams["momentum"]
        if momentum is not None and not 0 <= momentum < 1:
            raise UserError(f"hd: momentum must lie in [0, 1), got {momentum}")
        self._momentum_buffer: list[Tensor] | None = None

    def _text_lr(self) -> float:
        return float(self.run.task.base_lr)

    def _text_hyper_lr(self, lr0: float) -> float:
        return self.paper_hyper_lr / self.paper_lr * lr0

    # -- the variant actually run ----------------------------------------------------------
    def _momentum(self) -> float:
        m = self.hparams["momentum"]
        return float(self.run.task.optim.momentum if m is None else m)

    def _nesterov(self) -> bool:
        n = self.hparams["nesterov"]
        return bool(self.run.task.optim.nesterov if n is None else n) and self._momentum() > 0

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        if self.hparams["nesterov"] and self._momentum() == 0:
            raise UserError("hd: nesterov=True needs a momentum > 0 (task or hparam)")

    def _step(self, grads: list[Tensor]) -> list[Tensor]:
        if self._previous_direction is not None:
            self._move(float(dot(grads, self._previous_direction)))
        direction = self._direction(grads)
        # For SGDM the buffer itself: h is read off it before the next in-place update.
        self._previous_direction = direction
        return direction

    def _direction(self, grads: list[Tensor]) -> list[Tensor]:
        """``grads`` are this step's fresh tensors: the Nesterov direction is built in them."""
        mu = self._momentum()
        if mu == 0:
            return grads
        if self._momentum_buffer is None:
            self._momentum_buffer = [g.clone() for g in grads]
        else:
            torch._foreach_mul_(self._momentum_buffer, mu)
            torch._foreach_add_(self._momentum_buffer, grads)
        if self._nesterov():
            torch._foreach_add_(grads, self._momentum_buffer, alpha=mu)
            return grads
        return self._momentum_buffer

    def extra_info(self) -> dict[str, Any]:
        if self.run is None:
            return {}
        variant = "sgdn" if self._nesterov() else "sgdm" if self._momentum() else "sgd"
        return {"hd_variant": variant, "hd_momentum": self._momentum(), "hd_nesterov": self._nesterov(),
                **super().extra_info()}

    def _place(self, params: Sequence[Tensor]) -> None:
        super()._place(params)
        self._momentum_buffer = placed_like(self._momentum_buffer, params)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "momentum_buffer": clone_all(self._momentum_buffer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._momentum_buffer = clone_all(state["momentum_buffer"])


class AdamHD(_HypergradientMethod):
    """Adam-HD (``hypergrad/adam_hd.py``): Adam's direction, the LR moved by hypergradients."""

    name: ClassVar[str] = "hd-adam"
    description: ClassVar[str] = "Hypergradient descent on Adam's LR (Adam-HD, Baydin et al. 2018)"
    paper_hyper_lr: ClassVar[float] = 1e-8
    defaults: ClassVar[dict[str, Any]] = {
        #: None: the paper's 1e-3 (images and text).
        "lr": None,
        #: None: the paper's 1e-8 (VGG/CIFAR-10 in run.sh; AdamHD's default).
        "hyper_lr": None,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        #: "per-tensor": the LR moves tensor by tensor inside the step (official); "global": once.
        "lr_update": "per-tensor",
        "clamp_nonneg": False,
    }
    search_space: ClassVar[dict[str, SearchDim]] = {
        "lr": ("loguniform", 1e-4, 1e-1),
        "hyper_lr": ("loguniform", 1e-10, 1e-5),
    }
    search_spaces: ClassVar[dict[str, dict[str, SearchDim]]] = {"image": search_space, "text": search_space}
    _state_keys: ClassVar[tuple[str, ...]] = ("step", "exp_avg", "exp_avg_sq")
    hparam_specs: ClassVar[dict[str, HParam]] = {
        **_COMMON_SPECS,
        "beta1": HParam("number", low=0.0, high=1.0, high_open=True),
        "beta2": HParam("number", low=0.0, high=1.0, high_open=True),
        "eps": HParam("number", low=0.0, low_open=True),
        "lr_update": HParam("str", choices=LR_UPDATES),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        h = self.hparams
        if h["lr_update"] not in LR_UPDATES:
            raise UserError(f"hd-adam: lr_update must be one of {', '.join(LR_UPDATES)}, got {h['lr_update']!r}")
        if not (0 <= h["beta1"] < 1 and 0 <= h["beta2"] < 1):
            raise UserError(f"hd-adam: beta1 and beta2 must lie in [0, 1), got {h['beta1']}, {h['beta2']}")
        self._t = 0
        self._exp_avg: list[Tensor] | None = None
        self._exp_avg_sq: list[Tensor] | None = None

    def _step(self, grads: list[Tensor]) -> list[Tensor]:
        h = self.hparams
        b1, b2 = h["beta1"], h["beta2"]
        tensor_lrs: list[float] | None = None
        if self._previous_direction is not None:
            if h["lr_update"] == "global":
                self._move(float(dot(grads, self._previous_direction)))
            else:
                parts = torch.stack([torch.dot(g.reshape(-1), u.reshape(-1))
                                     for g, u in zip(grads, self._previous_direction, strict=True)])
                tensor_lrs = [self._move(part) for part in parts.tolist()]
        self._t += 1
        if self._exp_avg is None:
            self._exp_avg = [torch.zeros_like(g) for g in grads]
            self._exp_avg_sq = [torch.zeros_like(g) for g in grads]
        torch._foreach_mul_(self._exp_avg, b1)
        torch._foreach_add_(self._exp_avg, grads, alpha=1 - b1)
        torch._foreach_mul_(self._exp_avg_sq, b2)
        torch._foreach_addcmul_(self._exp_avg_sq, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(self._exp_avg_sq)
        torch._foreach_add_(denom, h["eps"])
        direction = torch._foreach_div(self._exp_avg, denom)
        torch._foreach_mul_(direction, (1 - b2 ** self._t) ** 0.5 / (1 - b1 ** self._t))
        self._previous_direction = direction
        if tensor_lrs is None or all(lr == self._lr for lr in tensor_lrs) or self._lr == 0.0:
            return direction
        return torch._foreach_mul(direction, [lr / self._lr for lr in tensor_lrs])

    def extra_info(self) -> dict[str, Any]:
        if self.run is None:
            return {}
        h = self.hparams
        return {"hd_variant": "adam", "hd_lr_update": h["lr_update"], "hd_betas": [h["beta1"], h["beta2"]],
                "hd_eps": h["eps"], **super().extra_info()}

    def _place(self, params: Sequence[Tensor]) -> None:
        super()._place(params)
        self._exp_avg = placed_like(self._exp_avg, params)
        self._exp_avg_sq = placed_like(self._exp_avg_sq, params)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "step": self._t, "exp_avg": clone_all(self._exp_avg),
                "exp_avg_sq": clone_all(self._exp_avg_sq)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._t = int(state["step"])
        self._exp_avg = clone_all(state["exp_avg"])
        self._exp_avg_sq = clone_all(state["exp_avg_sq"])
