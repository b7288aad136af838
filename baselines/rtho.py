"""RTHO: real-time hyper-parameter optimisation of the LR (Franceschi et al., ICML 2017).

RTHO carries the forward-mode derivative of the weights with respect to the learning rate
alongside training, never resetting it, and every ``update_every`` steps moves the LR
along the hypergradient of a held-out loss.  For the task's SGD (momentum ``mu``, weight
decay folded into the gradient ``g_t = grad L_t(w_t) + wd * w_t``)::

    b_{t+1} = mu * b_t + g_t                      d_t = b_{t+1}        (heavy ball)
                                                  d_t = g_t + mu*b_{t+1} (Nesterov)
    w_{t+1} = w_t - eta * d_t

and the tangents ``Z = dw/d eta``, ``Q = db/d eta`` (both start at zero) follow::

    HZ_t    = (H_t + wd * I) Z_t                  (Hessian-vector product, double backward)
    Q_{t+1} = mu * Q_t + HZ_t
    D_t     = Q_{t+1}   or   HZ_t + mu * Q_{t+1}  (heavy ball / Nesterov)
    Z_{t+1} = Z_t - eta * D_t - d_t

With ``mu = 0`` this is ``Z_{t+1} = (I - eta H_t) Z_t - g_t``.  The hypergradient after
step ``t`` is ``grad E_val(w_{t+1}) . Z_{t+1}``, with ``E_val`` the loss on held-out
batches of the training split (``RunContext.meta_batches``; never the test split).  When
the loop clipped the gradient (``clip_grad_norm``), ``d`` uses the clipped gradient and
the tangent uses the Jacobian of the clipping, ``c (I - u u^T)`` with ``c`` the clip
factor and ``u`` the unit raw gradient.

Settings follow the official code (github.com/lucfra/RFHO):

* hyper-optimiser: Adam on the LR with hyper-LR 5e-3 (``hyper_learning_rate=5.e-3`` of
  ``rfho/experiments/rtho_phonetic_embedding.py``, the paper's large-scale RTHO run),
  beta1 0.9, beta2 0.999, epsilon 1e-8 *inside* the square root and bias correction
  ``sqrt(1 - beta2^k) / (1 - beta1^k)`` (``rfho.doh.adam_dynamics``);
* positivity projection ``eta <- max(eta, 0)`` after every hyper-update (``positivity``);
* initial LR 0.075 (``learning_rate=.075`` of the same script);
* hyper-batch (steps between LR updates) 100 (``hyper_batch_size=100`` in the RTHO mode of
  ``rfho/examples/all_methods_on_mnist.py`` and in the README's RTHO example).  The paper's
  own value for its TIMIT run could not be retrieved; tune ``update_every`` if it matters.

Each hypergradient averages ``val_batches`` held-out batches (default 1); the size of the
held-out set (the supplement's Fig. 3 sweep) is the task profile's ``holdout`` (an
experiment's ``[overrides] holdout = 2000``).

Cost: every step takes the gradient with its graph and one Hessian-vector product through
it (about 3.5x a plain step on the CPU ``mini`` ResNet-18, a third of the product being
BatchNorm's double backward); the held-out gradient comes once per ``update_every`` steps.
cuDNN's RNN kernels have no double backward, so on a GPU the model's RNN modules run with
cuDNN switched off (forward hooks set while RTHO is bound).
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
    placed_like,
    require_keys,
    squared_norm,
)
from mlrsnet.errors import UserError
from mlrsnet.harness.contract import Method, OptimSettings, RunContext, SearchDim, StepInfo, stateless_sgd

_HYPER_BETA1 = 0.9
_HYPER_BETA2 = 0.999
_HYPER_EPSILON = 1e-8


class RealTimeHO(Method):
    name: ClassVar[str] = "rtho"
    description: ClassVar[str] = "Real-time forward-mode hypergradient LR optimisation (Franceschi et al. 2017)"
    defaults: ClassVar[dict[str, Any]] = {
        "lr": 0.075,
        "hyper_lr": 5e-3,
        "update_every": 100,
        "val_batches": 1,
        "positive": True,
    }
    search_space: ClassVar[dict[str, SearchDim]] = {
        "lr": ("loguniform", 1e-3, 0.5),
        "hyper_lr": ("loguniform", 1e-4, 1e-1),
        "update_every": ("choice", [10, 50, 100, 500]),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        for key in ("update_every", "val_batches"):
            value = self.hparams[key]
            if int(value) != value or value < 1:
                raise UserError(f"rtho: {key} must be a positive integer, got {value!r}")
        self._lr = float(self.hparams["lr"])
        self._steps_done = 0
        self._z: list[Tensor] | None = None  # dw/d eta
        self._q: list[Tensor] | None = None  # d(momentum buffer)/d eta
        self._momentum_buffer: list[Tensor] | None = None
        self._hyper_m = 0.0
        self._hyper_v = 0.0
        self._hyper_updates = 0
        self._last_hypergradient = float("nan")
        self._raw_grads: tuple[Tensor | None, ...] | None = None
        self._placed = True
        self._rnn_hooks: list[Any] = []

    # -- contract ---------------------------------------------------------------------------
    def build_optimizer(self, params: Sequence[nn.Parameter], optim: OptimSettings,
                        initial_lr: float = 0.0) -> torch.optim.Optimizer:
        return stateless_sgd(params, initial_lr)

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        if run.meta_batches is None or run.meta_loss is None:
            raise UserError(
                f"rtho needs held-out data of the training split for its validation loss, but "
                f"task {run.task_name!r} (profile {run.profile!r}) holds nothing out"
            )
        self._rnn_hooks = _run_rnns_without_cudnn(run.model) if run.device.type == "cuda" else []

    def backward(self, loss: Tensor, params: Sequence[nn.Parameter]) -> None:
        """Gradients with their graph kept (for the Hessian-vector product), detached copies in ``p.grad``."""
        raw = torch.autograd.grad(loss, list(params), create_graph=True, allow_unused=True)
        for p, g in zip(params, raw, strict=True):
            p.grad = None if g is None else g.detach().clone()
        self._raw_grads = raw

    def lr(self, step: StepInfo) -> float:
        """The LR in force: it moves only in the hyper-steps of :meth:`after_step`."""
        return self._lr

    def direction(self, step: StepInfo) -> list[Tensor]:
        """``d_t`` of the task's SGD (momentum, Nesterov, weight decay kept here), and the
        tangent ``Z`` advanced to ``Z_{t+1}`` with the LR of this step."""
        params = self.run.params
        if self._raw_grads is None:
            raise RuntimeError("rtho: direction() called without rtho's backward(); the step must call method.backward")
        if not self._placed:
            for attr in ("_z", "_q", "_momentum_buffer"):
                setattr(self, attr, placed_like(getattr(self, attr), params))
            self._placed = True
        optim = self.run.optim
        wd, mu = optim.weight_decay, optim.momentum
        nesterov = optim.nesterov and mu > 0

        raw = [torch.zeros_like(p) if g is None else g
               for p, g in zip(params, self._raw_grads, strict=True)]
        self._raw_grads = None
        with torch.no_grad():
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
        tangent_hz = self._curvature_times_z(params, raw, grads)

        with torch.no_grad():
            if wd:
                torch._foreach_add_(grads, [p.detach() for p in params], alpha=wd)
            direction, tangent_d = self._direction_and_tangent(grads, tangent_hz, mu, nesterov)
            if self._z is None:
                self._z = [torch.zeros_like(d) for d in direction]
            torch._foreach_add_(self._z, tangent_d, alpha=-self._lr)
            torch._foreach_sub_(self._z, direction)
        return direction

    def after_step(self, step: StepInfo) -> None:
        self._steps_done += 1
        if self._steps_done % int(self.hparams["update_every"]) == 0:
            self._hyper_update()

    def extra_info(self) -> dict[str, Any]:
        return {"rtho_update_every": int(self.hparams["update_every"])}

    # -- forward-mode tangent --------------------------------------------------------------
    def _curvature_times_z(self, params: Sequence[Tensor], raw: list[Tensor],
                           clipped: list[Tensor]) -> list[Tensor] | None:
        """``J_t Z_t`` for the gradient map actually applied (clipping included), or None when Z = 0."""
        if self._z is None:
            return None
        needs_graph = [g.requires_grad for g in raw]
        outputs = [g for g, keep in zip(raw, needs_graph, strict=True) if keep]
        vectors = [z for z, keep in zip(self._z, needs_graph, strict=True) if keep]
        hz = [torch.zeros_like(p) for p in params]
        if outputs:
            products = torch.autograd.grad(outputs, list(params), grad_outputs=vectors, allow_unused=True)
            hz = [torch.zeros_like(p) if h is None else h for p, h in zip(params, products, strict=True)]
        if self.run.optim.clip_grad_norm is None:
            return hz
        with torch.no_grad():
            raw_norm = math.sqrt(float(squared_norm([g.detach() for g in raw])))
            clipped_norm = math.sqrt(float(squared_norm(clipped)))
            if raw_norm > 0 and clipped_norm < raw_norm * (1 - 1e-12):
                # clipping g -> c g with c = max_norm / |g|: Jacobian c (I - u u^T) H, u = g/|g|
                scale = clipped_norm / raw_norm
                unit = [g.detach() / raw_norm for g in raw]
                along = float(dot(unit, hz))
                torch._foreach_add_(hz, unit, alpha=-along)
                torch._foreach_mul_(hz, scale)
        return hz

    def _direction_and_tangent(self, grads: list[Tensor], hz: list[Tensor] | None, mu: float,
                               nesterov: bool) -> tuple[list[Tensor], list[Tensor]]:
        wd = self.run.optim.weight_decay
        if hz is None:  # Z_t = 0: the tangent of the gradient map vanishes
            hz = [torch.zeros_like(g) for g in grads]
        elif wd:
            torch._foreach_add_(hz, self._z, alpha=wd)
        if mu == 0:
            return grads, hz
        if self._momentum_buffer is None:
            self._momentum_buffer = [g.clone() for g in grads]
            self._q = [h.clone() for h in hz]
        else:
            torch._foreach_mul_(self._momentum_buffer, mu)
            torch._foreach_add_(self._momentum_buffer, grads)
            torch._foreach_mul_(self._q, mu)
            torch._foreach_add_(self._q, hz)
        if nesterov:
            return (torch._foreach_add(grads, self._momentum_buffer, alpha=mu),
                    torch._foreach_add(hz, self._q, alpha=mu))
        return [b.clone() for b in self._momentum_buffer], [q.clone() for q in self._q]

    # -- the hyper-step --------------------------------------------------------------------
    def _hyper_update(self) -> None:
        hypergradient = self._hypergradient()
        self._last_hypergradient = hypergradient
        self._hyper_m = _HYPER_BETA1 * self._hyper_m + (1 - _HYPER_BETA1) * hypergradient
        self._hyper_v = _HYPER_BETA2 * self._hyper_v + (1 - _HYPER_BETA2) * hypergradient**2
        k = self._hyper_updates + 1
        step_size = self.hparams["hyper_lr"] * math.sqrt(1 - _HYPER_BETA2**k) / (1 - _HYPER_BETA1**k)
        self._lr -= step_size * self._hyper_m / math.sqrt(self._hyper_v + _HYPER_EPSILON)
        if self.hparams["positive"]:
            self._lr = max(self._lr, 0.0)
        self._hyper_updates = k

    def _hypergradient(self) -> float:
        """``grad E_val(w) . Z`` averaged over ``val_batches`` held-out batches."""
        run = self.run
        params = run.params
        if run.param_names:
            named = dict(zip(run.param_names, params, strict=True))
        else:
            named = dict(run.model.named_parameters())
        total = 0.0
        for _ in range(int(self.hparams["val_batches"])):
            loss = run.meta_loss(named, next(run.meta_batches))
            grads = torch.autograd.grad(loss, list(params), allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
            total += float(dot(grads, self._z))
        return total / int(self.hparams["val_batches"])

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self._lr,
            "steps_done": self._steps_done,
            "z": clone_all(self._z),
            "q": clone_all(self._q),
            "momentum_buffer": clone_all(self._momentum_buffer),
            "hyper_m": self._hyper_m,
            "hyper_v": self._hyper_v,
            "hyper_updates": self._hyper_updates,
            "last_hypergradient": self._last_hypergradient,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = ("lr", "steps_done", "z", "q", "momentum_buffer", "hyper_m", "hyper_v", "hyper_updates")
        require_keys(state, keys, self.name)
        self._lr = float(state["lr"])
        self._steps_done = int(state["steps_done"])
        self._z = clone_all(state["z"])
        self._q = clone_all(state["q"])
        self._momentum_buffer = clone_all(state["momentum_buffer"])
        self._hyper_m = float(state["hyper_m"])
        self._hyper_v = float(state["hyper_v"])
        self._hyper_updates = int(state["hyper_updates"])
        self._last_hypergradient = float(state.get("last_hypergradient", float("nan")))
        self._placed = False


def _run_rnns_without_cudnn(model: nn.Module) -> list[Any]:
    """cuDNN's RNN kernels have no double backward; run the model's RNNs with cuDNN off."""
    handles = []
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            saved: dict[str, bool] = {}

            def switch_off(_module: nn.Module, _inputs: Any, saved: dict[str, bool] = saved) -> None:
                saved["enabled"] = torch.backends.cudnn.enabled
                torch.backends.cudnn.enabled = False

            def restore(_module: nn.Module, _inputs: Any, _output: Any, saved: dict[str, bool] = saved) -> None:
                torch.backends.cudnn.enabled = saved.get("enabled", True)

            handles.append(module.register_forward_pre_hook(switch_off))
            handles.append(module.register_forward_hook(restore))
    return handles
