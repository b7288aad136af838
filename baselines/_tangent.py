"""Forward-mode tangent of the weights with respect to the LR, shared by RTHO and MARTHE.

Both methods carry ``Z = dw/d eta`` alongside training and read a hypergradient
``grad E_val(w) . Z`` off held-out data; they differ in how far back ``Z`` remembers
(MARTHE's discount ``mu``; RTHO is ``mu = 1``) and in the hyper-step.  This module holds
the part they share, written once.

The dynamics are the task's SGD (momentum ``m``, weight decay folded into the gradient
``g_t = grad L_t(w_t) + wd * w_t``, after any clipping the loop did)::

    b_{t+1} = m * b_t + g_t                       d_t = b_{t+1}         (heavy ball)
                                                  d_t = g_t + m*b_{t+1} (Nesterov)
    w_{t+1} = w_t - eta_t * d_t

(``b_1 = g_0``: torch's SGD starts its buffer at the first gradient.)  With ``Z`` and
``Q = db/d eta`` the tangents of the two state variables, ``A_t`` the Jacobian of one step
with respect to the state and ``B_t = -d_t`` its derivative with respect to ``eta_t``,
MARTHE's recursion ``(Z, Q)_{t+1} = mu * A_t (Z, Q)_t + B_t`` (Donini et al. 2020) reads::

    HZ_t    = (J_t + wd * I) Z_t          J_t: Jacobian of the (clipped) gradient map, i.e. the
                                          Hessian-vector product H_t Z_t by double backward
    Q'      = m * Q_t + HZ_t
    D_t     = Q'   or   HZ_t + m * Q'     (heavy ball / Nesterov)
    Z_{t+1} = mu * (Z_t - eta_A * D_t) - d_t
    Q_{t+1} = mu * Q'

``mu = 1`` is Franceschi et al.'s exact forward-mode derivative (RTHO); ``eta_A`` is the LR
of the step (the paper's ``A_t``); MARTHE's ``tangent_lr="initial"`` uses the initial LR
instead, as adatune's ``MuSGD`` does (``adatune/mu_sgd.py``: ``self.lr`` is read once in
``__init__``).  When the loop clipped the gradient (``clip_grad_norm``), ``J_t`` is the
Jacobian of the clipping times the Hessian, ``c (I - u u^T) H_t`` with ``c`` the clip factor
and ``u`` the unit raw gradient.  ``clamp`` (adatune's ``grad_clipping``, element-wise, off
by default) clamps the gradient (so the step too, as adatune's in-place clamp does), the
Hessian-vector product and the held-out gradient to ``[-clamp, clamp]``.

The held-out gradient is taken at ``w_{t+1}`` with the model in its current mode: the loop
trains in train mode, so BatchNorm normalises a held-out batch with its own statistics (its
running buffers are cloned by the held-out loss and stay untouched) and dropout is active, as in
adatune (``ValidationGradient`` runs under ``net.train()``) and MLR-SNet's own meta step;
the official RTHO example (FAR-HO) has neither BatchNorm nor dropout, so it has no mode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mlrsnet.baselines._direction import clone_all, dot, placed_like, require_keys, squared_norm
from mlrsnet.baselines._second_order import exact_second_order, swapped_layers
from torch import Tensor, nn

from mlrsnet.harness.contract import RunContext


class LRTangent:
    """``Z = dw/d eta`` and ``Q = db/d eta`` of the task's SGD, with the momentum buffer
    ``b`` the method applies (the direction is computed here, with its tangent)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.z: list[Tensor] | None = None
        self.q: list[Tensor] | None = None
        self.momentum_buffer: list[Tensor] | None = None
        self._raw_grads: tuple[Tensor | None, ...] | None = None
        self._placed = True

    def backward(self, loss: Tensor, params: Sequence[nn.Parameter]) -> None:
        """Gradients with their graph kept (for the Hessian-vector product), detached copies in ``p.grad``."""
        raw = torch.autograd.grad(loss, list(params), create_graph=True, allow_unused=True)
        for p, g in zip(params, raw, strict=True):
            p.grad = None if g is None else g.detach().clone()
        self._raw_grads = raw

    def direction(self, run: RunContext, tangent_lr: float, *, discount: float = 1.0,
                  clamp: float | None = None) -> list[Tensor]:
        """``d_t`` of the task's SGD, and ``(Z, Q)`` advanced to step ``t + 1`` with
        ``tangent_lr`` in ``A_t`` and the discount ``mu``."""
        params = run.params
        if self._raw_grads is None:
            raise RuntimeError(f"{self.owner}: direction() called without its backward(); "
                               "the step must call method.backward")
        if not self._placed:
            self.z, self.q, self.momentum_buffer = (placed_like(t, params)
                                                    for t in (self.z, self.q, self.momentum_buffer))
            self._placed = True
        optim = run.task.optim
        wd, m = optim.weight_decay, optim.momentum
        nesterov = optim.nesterov and m > 0

        raw = [torch.zeros_like(p) if g is None else g for p, g in zip(params, self._raw_grads, strict=True)]
        self._raw_grads = None
        with torch.no_grad():
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
        hz = self._jacobian_times_z(params, raw, grads, optim.clip_grad_norm)

        with torch.no_grad():
            if clamp is not None:
                for t in grads + (hz or []):
                    t.clamp_(-clamp, clamp)
            if wd:
                torch._foreach_add_(grads, [p.detach() for p in params], alpha=wd)
                if hz is not None:
                    torch._foreach_add_(hz, self.z, alpha=wd)
            if hz is None:  # Z_t = 0: the tangent of the gradient map vanishes
                hz = [torch.zeros_like(g) for g in grads]
            direction, tangent_d = self._momentum(grads, hz, m, nesterov)
            if self.z is None:
                self.z = [torch.zeros_like(d) for d in direction]
            torch._foreach_add_(self.z, tangent_d, alpha=-tangent_lr)
            if discount != 1.0:
                torch._foreach_mul_(self.z, discount)
                if self.q is not None:
                    torch._foreach_mul_(self.q, discount)
            torch._foreach_sub_(self.z, direction)
        return direction

    def _jacobian_times_z(self, params: Sequence[Tensor], raw: list[Tensor], clipped: list[Tensor],
                          clip_grad_norm: float | None) -> list[Tensor] | None:
        """``J_t Z_t`` for the gradient map actually applied (clipping included), or None when Z = 0."""
        if self.z is None:
            return None
        needs_graph = [g.requires_grad for g in raw]
        outputs = [g for g, keep in zip(raw, needs_graph, strict=True) if keep]
        vectors = [z for z, keep in zip(self.z, needs_graph, strict=True) if keep]
        hz = [torch.zeros_like(p) for p in params]
        if outputs:
            products = torch.autograd.grad(outputs, list(params), grad_outputs=vectors, allow_unused=True)
            hz = [torch.zeros_like(p) if h is None else h for p, h in zip(params, products, strict=True)]
        if clip_grad_norm is None:
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

    def _momentum(self, grads: list[Tensor], hz: list[Tensor], m: float,
                  nesterov: bool) -> tuple[list[Tensor], list[Tensor]]:
        """``(d_t, D_t)``; advances ``b`` and ``Q`` to ``m * . + g_t`` and ``m * . + HZ_t``."""
        if m == 0:
            return grads, hz
        if self.momentum_buffer is None:
            self.momentum_buffer = [g.clone() for g in grads]
            self.q = [h.clone() for h in hz]
        else:
            torch._foreach_mul_(self.momentum_buffer, m)
            torch._foreach_add_(self.momentum_buffer, grads)
            torch._foreach_mul_(self.q, m)
            torch._foreach_add_(self.q, hz)
        if nesterov:
            return (torch._foreach_add(grads, self.momentum_buffer, alpha=m),
                    torch._foreach_add(hz, self.q, alpha=m))
        return [b.clone() for b in self.momentum_buffer], [q.clone() for q in self.q]

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"z": clone_all(self.z), "q": clone_all(self.q), "momentum_buffer": clone_all(self.momentum_buffer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("z", "q", "momentum_buffer"), self.owner)
        self.z, self.q, self.momentum_buffer = (clone_all(state[k]) for k in ("z", "q", "momentum_buffer"))
        self._placed = False


def held_out_batches(run: RunContext, val_batches: int | None) -> int:
    """How many held-out batches one hypergradient averages: ``val_batches``, or with
    ``None`` one pass over the whole held-out set (the source's ``batches_per_pass``; the
    workloads' sources have it).  A stand-in source without a pass length (a test's cycled
    list) gives one batch."""
    if val_batches is not None:
        return int(val_batches)
    per_pass = run.held_out.batches_per_pass if run.held_out is not None else None
    return 1 if per_pass is None else int(per_pass)


def batch_weight(batch: Any) -> int:
    """Examples (images) or target tokens (text windows) in a held-out batch."""
    targets = batch.y if hasattr(batch, "y") else batch[1]
    return int(targets.numel()) if isinstance(targets, Tensor) else len(targets)


def hypergradient(run: RunContext, z: Sequence[Tensor], batches: int, clamp: float | None = None) -> float:
    """``grad E_val(w) . Z`` over ``batches`` held-out batches, the batches weighted by their
    size (for a whole pass: the gradient of the mean loss over the whole held-out set)."""
    params = run.params
    named = dict(zip(run.param_names, params, strict=True)) if run.param_names else dict(run.model.named_parameters())
    total = weight = 0.0
    for _ in range(batches):
        batch = run.held_out.next_batch()
        loss = run.held_out.loss(named, batch)
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        if clamp is not None:
            grads = [g.clamp(-clamp, clamp) for g in grads]
        w = batch_weight(batch)
        total += w * float(dot(grads, z))
        weight += w
    return total / weight


def second_order_hooks(run: RunContext) -> list[Any]:
    """What the model needs while a tangent method is bound: :mod:`baselines._second_order`'s
    BatchNorm and Conv2d passes (exact, cheaper Hessian-vector products) and, on a GPU, RNNs
    without cuDNN.  Handles with ``remove()``."""
    handles: list[Any] = list(exact_second_order(run.model))
    if run.device.type == "cuda":
        handles += run_rnns_without_cudnn(run.model)
    return handles


def second_order_info(handles: Sequence[Any]) -> dict[str, Any]:
    """``runs.method_info`` entry: the layers whose second-order pass is the suite's."""
    return {"second_order_layers": swapped_layers([h for h in handles if hasattr(h, "module")])}


def run_rnns_without_cudnn(model: nn.Module) -> list[Any]:
    """cuDNN's RNN kernels have no double backward; run the model's RNNs with cuDNN off
    (forward hooks, set while the method is bound)."""
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
