"""Plumbing shared by methods that compute the whole update direction themselves.

HD, L4 and RTHO each define their own update (momentum buffers, moving averages, tangent
vectors), so they keep that state in the method, not in a ``torch.optim`` optimiser: the
method's ``state_dict`` is then complete and a resumed run continues exactly.  Through the
contract's ``direction()`` hook they hand that direction to the harness, which writes it into
``p.grad`` for the method's optimiser, :func:`~mlrsnet.harness.contract.stateless_sgd` (no
momentum, no weight decay), to apply as ``p <- p - lr * d``.  They never write their direction into ``p.grad``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mlrsnet.errors import UserError


def gradients_with_weight_decay(params: Sequence[Tensor], weight_decay: float,
                                scale: float = 1.0) -> list[Tensor]:
    """Fresh tensors ``scale * p.grad + weight_decay * p`` (a missing gradient counts as zero).

    This is the gradient the task's SGD would follow (its weight decay is an L2 penalty
    folded into the gradient, after any clipping the loop did); ``scale`` (default 1) lets a
    method undo that clipping.  One ``torch._foreach`` call per term: the same elementwise
    arithmetic as ``p.grad.clone().add_(p, alpha=weight_decay)``, without a clone pass.
    """
    with torch.no_grad():  # (gradients carry no graph here, and no_grad records none)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        params = list(params)
        if scale != 1.0:
            grads = torch._foreach_mul(grads, scale)
            if weight_decay:
                torch._foreach_add_(grads, params, alpha=weight_decay)
            return grads
        if weight_decay:
            return torch._foreach_add(grads, params, alpha=weight_decay)
        return [g.clone() for g in grads]


def dot(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
    """The inner product of two parameter-shaped lists, as a 0-d tensor."""
    if not xs:
        return torch.zeros(())
    parts = [torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(xs, ys, strict=True)]
    return torch.stack(parts).sum()


def squared_norm(xs: Sequence[Tensor]) -> Tensor:
    return dot(xs, xs)


def clone_all(tensors: Sequence[Tensor] | None) -> list[Tensor] | None:
    return None if tensors is None else [t.detach().clone() for t in tensors]


def placed_like(tensors: Sequence[Tensor] | None, params: Sequence[Tensor]) -> list[Tensor] | None:
    """Saved tensors moved to each parameter's device and dtype (after a resume)."""
    if tensors is None:
        return None
    if len(tensors) != len(params):
        raise UserError(
            f"saved method state holds {len(tensors)} tensors but the model has {len(params)} "
            "parameters: the checkpoint belongs to a different model"
        )
    return [t.to(device=p.device, dtype=p.dtype) for t, p in zip(tensors, params, strict=True)]


def require_keys(state: Mapping[str, Any], keys: Sequence[str], method: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"method {method!r}: saved state lacks {', '.join(missing)}")
