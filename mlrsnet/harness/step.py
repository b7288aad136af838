"""The training step, written once.

:func:`start_run` sets a method up for a run (the optimiser it asks for, the
:class:`~mlrsnet.harness.contract.RunContext` it sees, ``bind``) and :func:`train_step` applies
one training step in the contract's call order.  The loop (:mod:`mlrsnet.harness.loop`), the
update-by-update tests of every method and the perf benchmarks call these two functions, so
the call order lives here and nowhere else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from mlrsnet.harness.contract import Horizon, Method, RunContext, StepInfo, TaskFacts


class StepResult(NamedTuple):
    """What one step leaves for the loop's trace and its divergence check."""

    #: The LR the method chose (``nan`` when the loss was not finite: ``lr()`` was not called).
    lr: float
    #: The mini-batch training loss: a float when the step checked it on the host, else a 0-d
    #: tensor on the training device (see :func:`train_step`).
    loss: float | Tensor
    #: ``True`` when the loss or the LR was not finite; the parameters were then left alone
    #: (no direction, no ``optimizer.step()``, no ``after_step``).
    diverged: bool


def train_step(method: Method, info: StepInfo, params: Sequence[nn.Parameter],
               optimizer: torch.optim.Optimizer, clip_grad_norm: float | None) -> StepResult:
    """One training step on ``info.loss`` (the forward pass is the caller's)::

        loss = float(info.loss); stop here if it is not finite   # methods that read the loss
        optimizer.zero_grad(set_to_none=True)
        method.backward(info.loss, params)      # leaves the gradient in p.grad
        clip p.grad to clip_grad_norm           # when the task clips
        lr = float(method.lr(info));  stop here if it is not finite (or beyond the
                                      parameters' float type: it would overflow)
        d = method.direction(info)              # None: the optimiser's own direction
        if d is not None: p.grad <- d           # written here, never by the method
        group["lr"] = lr for every param group
        optimizer.step()
        method.after_step(info)

    ``params`` is ``run.params`` (the direction's tensors pair with it, in order).

    A method whose LR does not depend on the loss (``reads_loss = False``: the hand-designed
    schedules) is stepped without reading the loss on the host, so a GPU step never waits
    for the device: the loss comes back as a device tensor and the caller checks an epoch's
    losses at once (:func:`first_non_finite`).  A non-finite loss then still takes its step
    (on NaN gradients); the loop cuts the trace at that step, marks it as the step that was
    not taken (LR ``nan``) and ends the run ``diverged``, so the tables are those of the host
    check.
    """
    if not method.reads_loss:
        compute_gradients(method, info.loss, params, optimizer, clip_grad_norm)
        return _apply(method, info, params, optimizer, info.loss.detach())
    loss_value = float(info.loss.detach())
    if not math.isfinite(loss_value):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(float("nan"), loss_value, True)
    compute_gradients(method, info.loss, params, optimizer, clip_grad_norm)
    return _apply(method, info, params, optimizer, loss_value)


def _apply(method: Method, info: StepInfo, params: Sequence[nn.Parameter],
           optimizer: torch.optim.Optimizer, loss: float | Tensor) -> StepResult:
    """The part of :func:`train_step` after the gradients: LR, direction, step, after_step."""
    lr = float(method.lr(info))
    if not math.isfinite(lr) or abs(lr) > _largest(params):  # an LR the parameters cannot hold
        return StepResult(lr, loss, True)                     # is infinite for the step
    direction = method.direction(info)
    if direction is not None:
        _use_direction(method, params, optimizer, direction)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    method.after_step(info)
    return StepResult(lr, loss, False)


def _largest(params: Sequence[Tensor]) -> float:
    """The largest number the parameters' floating type holds (an LR beyond it overflows in
    ``optimizer.step()``: 1e39 for float32)."""
    dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float64
    return float(torch.finfo(dtype).max)


def workload_step(workload: Any, model: nn.Module, batch: Any, carry: Any, stats: Any, method: Method,
                  params: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer,
                  clip_grad_norm: float | None, *, step: int, epoch: int, index: int) -> tuple[Any, StepResult]:
    """One batch as the loop trains it: the workload's forward and loss (``workload.loss``,
    which also adds to ``stats``), then :func:`train_step`.  Returns the next carry (the LSTM
    state) and the step's result.  The loop's body, and what the loop-overhead benchmark
    times against a hand-written step."""
    loss, carry = workload.loss(model, batch, carry, stats)
    info = StepInfo(step=step, epoch=epoch, index_in_epoch=index, loss=loss)
    return carry, train_step(method, info, params, optimizer, clip_grad_norm)


def host_losses(losses: Sequence[float | Tensor]) -> list[float]:
    """The losses of :class:`StepResult` as floats, with one transfer for all device tensors."""
    on_device = [i for i, v in enumerate(losses) if isinstance(v, Tensor)]
    if not on_device:
        return [float(v) for v in losses]
    moved = torch.stack([losses[i] for i in on_device]).tolist()
    out = [float(v) if not isinstance(v, Tensor) else 0.0 for v in losses]
    for i, v in zip(on_device, moved, strict=True):
        out[i] = float(v)
    return out


def first_non_finite(values: Sequence[float]) -> int | None:
    """Index of the first value that is not finite, or None."""
    return next((i for i, v in enumerate(values) if not math.isfinite(v)), None)


def compute_gradients(method: Method, loss: Tensor, params: Sequence[nn.Parameter],
                      optimizer: torch.optim.Optimizer, clip_grad_norm: float | None) -> None:
    """The first part of :func:`train_step`: ``zero_grad``, ``method.backward``, clipping.
    (Also for a test that looks inside a step, just before ``lr()``.)"""
    optimizer.zero_grad(set_to_none=True)
    method.backward(loss, params)
    if clip_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)


def _use_direction(method: Method, params: Sequence[Tensor], optimizer: torch.optim.Optimizer,
                   direction: Sequence[Tensor]) -> None:
    """Hand the method's direction to its stateless SGD, which then applies ``p - lr * d``."""
    if len(direction) != len(params):
        raise RuntimeError(f"method {method.name!r}: direction() gave {len(direction)} tensors "
                           f"for {len(params)} parameters")
    if not isinstance(optimizer, torch.optim.SGD) or any(
            g["momentum"] or g["weight_decay"] or g.get("maximize", False) for g in optimizer.param_groups):
        raise RuntimeError(
            f"method {method.name!r} returns its own direction, so its build_optimizer must return "
            "contract.stateless_sgd (SGD without momentum or weight decay), which applies it as given"
        )
    with torch.no_grad():
        for p, d in zip(params, direction, strict=True):
            if p.grad is None or p.grad.shape != d.shape:
                p.grad = d.detach().clone()
            else:
                p.grad.copy_(d)


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``model.named_parameters()`` that require a gradient, in that order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _train_loss(workload: Any, model: nn.Module, seed: int) -> float:
    """``workload.train_loss_pass`` with a fresh generator per call (same draws every time)."""
    return workload.train_loss_pass(model, torch.Generator().manual_seed(seed + 2))


def start_run(method: Method, model: nn.Module, *, task: Any, workload: Any, scale: str, epochs: int,
              seed: int, device: torch.device, meta_generator: torch.Generator | None = None,
              steps_per_epoch: int | None = None, artifact_dir: str | Path | None = None) -> RunContext:
    """Build the optimiser (``method.build_optimizer`` on the trainable parameters with the
    task's settings), the :class:`RunContext` of the run, and ``method.bind`` it.

    ``task`` needs what a :class:`~mlrsnet.harness.contract.TaskSetting` has: ``name``,
    ``kind``, ``optim`` and ``base_lr``.  ``workload`` needs what a
    :class:`~mlrsnet.harness.contract.Workload` has: ``num_outputs``, ``steps_per_epoch`` and
    ``held_out(model, generator)``; ``train_loss_pass`` is optional.  ``scale`` is the
    profile's (:func:`~mlrsnet.harness.contract.profile_scale`).  The held-out data is built
    only for a method that declares ``uses_held_out``, drawn with ``meta_generator``
    (default: seeded with ``seed + 1``, as the loop does); ``steps_per_epoch`` overrides the
    workload's (a benchmark numbering steps as in the paper).
    """
    named = trainable_parameters(model)
    optimizer = method.build_optimizer([p for _, p in named], task.optim)
    if meta_generator is None:
        meta_generator = torch.Generator().manual_seed(seed + 1)
    held_out = workload.held_out(model, meta_generator) if method.uses_held_out else None
    run = RunContext(
        model=model, named_params=named, optimizer=optimizer,
        horizon=Horizon(steps_per_epoch=workload.steps_per_epoch if steps_per_epoch is None else steps_per_epoch,
                        epochs=epochs),
        task=TaskFacts(name=task.name, kind=task.kind, num_outputs=workload.num_outputs,
                       base_lr=task.base_lr, optim=task.optim),
        scale=scale, seed=seed, device=device, held_out=held_out,
        # a stand-in workload of a test may have no training pass: methods then fall back
        train_loss=(functools.partial(_train_loss, workload, model, seed)
                    if hasattr(workload, "train_loss_pass") else None),
        artifact_dir=str(artifact_dir) if artifact_dir else None,
    )
    method.bind(run)
    return run
