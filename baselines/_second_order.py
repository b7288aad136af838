"""Exact second-order passes for BatchNorm and 2-d convolutions, cheaper than autograd's.

RTHO and MARTHE take a Hessian-vector product every step by differentiating the gradient
(double backward, :mod:`baselines._tangent`).  PyTorch's generic double-backward formulas
for these two layers dominate that product on CPU: on the ``mini`` ResNet-18, BatchNorm's
(``batchnorm_double_backward``, some 30 element-wise passes per layer) took about a third of
it and the convolutions' generic ``_convolution_double_backward`` computes the weight term as
a convolution over transposed batch and channel axes, slower than the native weight-gradient
kernel.  This module re-derives both and runs them on the native first-order kernels, so the
numbers are the same products (to rounding) in fewer, larger operations:

BatchNorm (training mode, batch statistics; per channel, ``N`` elements, ``x_hat`` the
normalised input, ``r`` the inverse standard deviation, ``a = gamma * r``).  First order
(``native_batch_norm_backward``)::

    d_beta = sum(g)      d_gamma = sum(g * x_hat)      dx = a * (g - mean(g) - x_hat * mean(g * x_hat))

Its backward, for cotangents ``(u, v_gamma, v_beta)`` of ``(dx, d_gamma, d_beta)``, with
``c = v_gamma - a * mean(u * x_hat)`` and ``R = N * (mean(u*g) - mean(u) mean(g) - mean(g*x_hat) mean(u*x_hat))``::

    d/dg     = a * u + c * x_hat + v_beta - a * mean(u)
    d/dgamma = r * R
    d/dx     = r * (G - mean(G) - x_hat * mean(G * x_hat)) - gamma * R * r^2 * x_hat / N,
               G = c * g - a * mean(g * x_hat) * u

(the last term is the dependence of ``a`` on ``x`` through ``r``).  Five per-channel
reductions and about ten element-wise passes in all.

Convolution.  The gradients are ``dx = conv_input_grad(g, W)`` and ``dW = conv_weight_grad(x, g)``;
for cotangents ``(u, v_W, v_b)`` of ``(dx, dW, db)`` the backward is::

    d/dg = conv(u, W) + conv(x, v_W) + v_b        d/dx = conv_input_grad(g, v_W)
    d/dW = conv_weight_grad(u, g)

and the last two are one native ``convolution_backward`` call with ``u`` as its input and
``v_W`` as its weight.

:func:`exact_second_order` swaps in these layers' forward on a model's modules (only plain
``nn.BatchNorm1d/2d/3d`` in training mode with running statistics and affine parameters, and
``nn.Conv2d`` with zero padding given as numbers; anything else keeps PyTorch's path).  The
forward and the first-order gradients are the native kernels, so training is unchanged; only
the second-order terms come from here (checked against autograd's double backward in
``tests/baselines/test_second_order.py``).  Nothing here follows an official file: the RTHO
and MARTHE reference codes use their frameworks' autograd.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _per_channel(values: Tensor, like: Tensor) -> Tensor:
    """A per-channel vector shaped to broadcast against ``like`` (channels on axis 1)."""
    return values.view((1, -1) + (1,) * (like.dim() - 2))


class _BatchNormGradients(torch.autograd.Function):
    """``(dx, d_gamma, d_beta)`` of training-mode BatchNorm; its backward is the module docstring's."""

    @staticmethod
    def forward(ctx: Any, grad_out: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor,
                eps: float) -> tuple[Tensor, Tensor, Tensor]:
        dx, dweight, dbias = torch.ops.aten.native_batch_norm_backward(
            grad_out, x, weight, None, None, mean, invstd, True, eps, [True, True, True])
        ctx.save_for_backward(grad_out, x, weight, mean, invstd, dweight, dbias)
        return dx, dweight, dbias

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, u: Tensor | None, v_weight: Tensor | None,
                 v_bias: Tensor | None) -> tuple[Tensor | None, ...]:
        g, x, weight, mean, invstd, dweight, dbias = ctx.saved_tensors
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]

        def ch(t: Tensor) -> Tensor:
            return _per_channel(t, x)

        zero = torch.zeros_like(weight)
        v_weight = zero if v_weight is None else v_weight
        v_bias = zero if v_bias is None else v_bias
        x_hat = torch.addcmul(ch(-mean * invstd), x, ch(invstd))
        mean_g, mean_gx = dbias / n, dweight / n
        a = weight * invstd
        if u is None:
            mean_u = mean_ux = mean_ug = zero
        else:
            mean_u = u.sum(dims) / n
            mean_ux = (u * x_hat).sum(dims) / n
            mean_ug = (u * g).sum(dims) / n
        c = v_weight - a * mean_ux
        big_r = n * (mean_ug - mean_u * mean_g - mean_gx * mean_ux)
        grad_weight = invstd * big_r
        mean_big_g = mean_g * c - a * mean_gx * mean_u
        mean_big_gx = mean_gx * c - a * mean_gx * mean_ux
        along_x_hat = -invstd * mean_big_gx - weight * big_r * invstd * invstd / n
        grad_x = torch.addcmul(ch(-invstd * mean_big_g), x_hat, ch(along_x_hat))
        grad_x.addcmul_(g, ch(invstd * c))
        grad_g = torch.addcmul(ch(v_bias - a * mean_u), x_hat, ch(c))
        if u is not None:
            grad_x.addcmul_(u, ch(-invstd * a * mean_gx))
            grad_g.addcmul_(u, ch(a))
        return grad_g, grad_x, grad_weight, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode BatchNorm by the native kernel (running statistics updated in place)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor, running_var: Tensor,
                momentum: float, eps: float) -> Tensor:
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        dx, dweight, dbias = _BatchNormGradients.apply(grad_out, x, weight, mean, invstd, ctx.eps)
        return dx, dweight, dbias, None, None, None, None


def _batch_norm_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """``_BatchNorm.forward`` for the training-mode case (same momentum rule), through :class:`_BatchNormTrain`."""
    if not self.training:
        return type(self).forward(self, x)
    self._check_input_dim(x)
    self.num_batches_tracked.add_(1)
    momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
    return _BatchNormTrain.apply(x, self.weight, self.bias, self.running_mean, self.running_var, momentum, self.eps)


class _ConvGradients(torch.autograd.Function):
    """``(dx, dW, db)`` of a 2-d convolution by the native kernel; its backward is the module docstring's."""

    @staticmethod
    def forward(ctx: Any, grad_out: Tensor, x: Tensor, weight: Tensor, has_bias: bool, conf: tuple[Any, ...],
                need_x: bool) -> tuple[Tensor | None, Tensor, Tensor | None]:
        stride, padding, dilation, groups = conf
        dx, dweight, dbias = torch.ops.aten.convolution_backward(
            grad_out, x, weight, [weight.shape[0]] if has_bias else None, stride, padding, dilation,
            False, [0, 0], groups, [need_x, True, has_bias])
        ctx.save_for_backward(grad_out, x, weight)
        ctx.conf, ctx.has_bias = conf, has_bias
        return dx, dweight, dbias

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, u: Tensor | None, v_weight: Tensor | None,
                 v_bias: Tensor | None) -> tuple[Tensor | None, ...]:
        g, x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        need_g, need_x, need_weight = ctx.needs_input_grad[:3]
        v_bias = v_bias if ctx.has_bias else None
        grad_g = grad_x = grad_weight = None
        if need_g:
            if v_weight is not None:
                grad_g = F.conv2d(x, v_weight, v_bias, stride, padding, dilation, groups)
            elif v_bias is not None:
                grad_g = _per_channel(v_bias, g).expand_as(g).clone()
            if u is not None:
                from_u = F.conv2d(u, weight, None, stride, padding, dilation, groups)
                grad_g = from_u if grad_g is None else grad_g.add_(from_u)
        want_x, want_weight = need_x and v_weight is not None, need_weight and u is not None
        if want_x or want_weight:
            grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
                g, u if u is not None else torch.zeros_like(x),
                v_weight if v_weight is not None else torch.zeros_like(weight),
                None, stride, padding, dilation, False, [0, 0], groups, [want_x, want_weight, False])
        return grad_g, grad_x, grad_weight, None, None, None


class _Conv2dTrain(torch.autograd.Function):
    """``F.conv2d`` whose gradients come from :class:`_ConvGradients`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, conf: tuple[Any, ...]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf, ctx.has_bias = conf, bias is not None
        return F.conv2d(x, weight, bias, *conf)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        dx, dweight, dbias = _ConvGradients.apply(grad_out, x, weight, ctx.has_bias, ctx.conf,
                                                  ctx.needs_input_grad[0])
        return dx, dweight, dbias, None


def _conv2d_forward(self: nn.Conv2d, x: Tensor) -> Tensor:
    conf = (list(self.stride), list(self.padding), list(self.dilation), self.groups)
    return _Conv2dTrain.apply(x, self.weight, self.bias, conf)


class _Swap:
    """Undoes one module's forward swap (``remove()``, as a hook handle)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def remove(self) -> None:
        self.module.__dict__.pop("forward", None)


def _swappable(module: nn.Module) -> Any:
    """The replacement forward for ``module``, or None when it keeps PyTorch's path."""
    if type(module) in _BATCH_NORMS:
        if module.affine and module.track_running_stats:
            return _batch_norm_forward
    elif type(module) is nn.Conv2d:
        if module.padding_mode == "zeros" and not isinstance(module.padding, str):
            return _conv2d_forward
    return None


def exact_second_order(model: nn.Module) -> list[_Swap]:
    """Give ``model``'s BatchNorm and Conv2d modules this module's second-order passes
    (instance-level ``forward``; ``remove()`` each returned handle to undo)."""
    handles = []
    for module in model.modules():
        forward = _swappable(module)
        if forward is not None and "forward" not in module.__dict__:
            module.forward = types.MethodType(forward, module)
            handles.append(_Swap(module))
    return handles


def swapped_layers(handles: Sequence[_Swap]) -> dict[str, int]:
    """How many modules of each kind :func:`exact_second_order` swapped (for ``runs.method_info``)."""
    counts: dict[str, int] = {}
    for handle in handles:
        kind = "conv2d" if isinstance(handle.module, nn.Conv2d) else "batch_norm"
        counts[kind] = counts.get(kind, 0) + 1
    return counts
