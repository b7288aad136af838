"""Look-ahead meta-learning of an LR: the machinery shared by ``mlrsnet`` and ``meta-sgd``.

A method built on :class:`LookaheadMetaMethod` makes its LR a differentiable function of
meta-parameters (MLR-SNet's network, Meta-SGD's per-step LRs) and, every ``t_val`` steps,
back-propagates the held-out meta loss at the one-step look-ahead weights
``w' = w - lr * d`` into them.  ``d`` is exactly the direction ``optimizer.step()`` is about
to apply (weight decay, momentum buffer, Nesterov, and any clipping the loop already applied
to ``p.grad``); it does not depend on the meta-parameters, so the meta-gradient
``-<grad L(w'), d> * dlr/dmeta`` is exact without second-order terms.

Follows the look-ahead of the official ``meta-train`` scripts of xjtushujun/MLR-SNet
(``main.py`` of the image and language-model folders), which build ``w'`` by rebuilding the
model; here ``w'`` is evaluated with ``torch.func.functional_call`` through
``run.held_out.loss`` (no model copy), which gives the same gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import Method, RunContext, StepInfo

PAPER_T_VAL = 300
#: Meta updates of the official ResNet-18/CIFAR-10 meta-training (one per epoch, 200 epochs).
PAPER_META_UPDATES = 200
META_LR = 1e-3
META_WEIGHT_DECAY = 1e-4

#: When a meta update happens, by task kind, as each official meta-training script decides it
#: (``i`` the in-epoch step index): the image script (``meta-train/image-classification/
#: meta_train.py:88``) updates when ``(i + 1) % t_val == 0`` (i = t_val-1, 2 t_val-1, ...: one
#: per CIFAR epoch at t_val 300, 383 steps), the language-model script
#: (``meta-train/language-modeling/meta_train.py:164,170``) when ``i % t_val == 0``
#: (i = 0, t_val, 2 t_val, ...: the first window of every epoch, three per PTB epoch of 829
#: windows at t_val 300).
META_STEP_RULES = {"image": "(i+1) % t_val == 0", "text": "i % t_val == 0"}


def default_t_val(scale: str, steps_per_epoch: int, epochs: int) -> int:
    """``t_val`` when none is given: 300 at the paper's scale, else about 200 updates per run
    (``scale``: :attr:`~mlrsnet.harness.contract.RunContext.scale`)."""
    if scale == "paper":
        return PAPER_T_VAL
    total = steps_per_epoch * epochs
    return max(1, min(steps_per_epoch, round(total / PAPER_META_UPDATES)))


def meta_steps_per_epoch(rule: str, t_val: int, steps_per_epoch: int) -> int:
    """How many in-epoch steps of an epoch make a meta update under ``rule``
    (:data:`META_STEP_RULES`): ``steps // t_val`` for images, ``ceil(steps / t_val)`` for text."""
    if rule == META_STEP_RULES["text"]:
        return -(-steps_per_epoch // t_val)
    return steps_per_epoch // t_val


@torch.no_grad()
def sgd_directions(optimizer: torch.optim.Optimizer) -> dict[Tensor, Tensor]:
    """For every parameter with a gradient, the ``d`` in ``p <- p - lr * d`` that
    ``torch.optim.SGD.step()`` would apply now (its momentum buffers are only read).

    Parameters without a gradient are left out: SGD does not move them.
    """
    directions: dict[Tensor, Tensor] = {}
    for group in optimizer.param_groups:
        wd, momentum = group.get("weight_decay", 0.0), group.get("momentum", 0.0)
        dampening, nesterov = group.get("dampening", 0.0), group.get("nesterov", False)
        sign = -1.0 if group.get("maximize", False) else 1.0
        for p in group["params"]:
            if p.grad is None:
                continue
            d = p.grad * sign
            if wd:
                d = d + wd * p
            if momentum:
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                buf = d.clone() if buf is None else buf * momentum + (1 - dampening) * d
                d = d + momentum * buf if nesterov else buf
            directions[p] = d
    return directions


def lookahead_params(named_params: list[tuple[str, Tensor]], directions: Mapping[Tensor, Tensor],
                     lr: Tensor) -> dict[str, Tensor]:
    """``w - lr * d`` by name, differentiable w.r.t. ``lr`` only (``w`` and ``d`` are constants)."""
    out: dict[str, Tensor] = {}
    for name, p in named_params:
        d = directions.get(p)
        if d is None:
            out[name] = p.detach()
        else:
            out[name] = p.detach() - lr.to(device=p.device, dtype=p.dtype) * d
    return out


class LookaheadMetaMethod(Method):
    """Shared machinery: a method whose LR is a differentiable function of meta-parameters,
    updated every ``t_val`` steps on the look-ahead meta loss.

    Subclasses keep their meta-parameters and their optimiser; they call
    :meth:`lookahead_backward` with the LR tensor of the current step, which draws the next
    meta batch, evaluates the meta loss at ``w - lr * d`` and back-propagates it into the
    meta-parameters (``.grad`` set, nothing stepped).  ``d`` is read off the optimiser, so
    these methods keep the contract's default ``direction()`` (``None``: the task's SGD step).
    """

    uses_held_out: ClassVar[bool] = True

    defaults: ClassVar[dict[str, Any]] = {
        "t_val": None,
        "hyper_lr": META_LR,
        "hyper_weight_decay": META_WEIGHT_DECAY,
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        if self.hparams["t_val"] is not None and int(self.hparams["t_val"]) < 1:
            raise UserError(f"method {self.name!r}: t_val must be a positive number of steps")
        self.t_val = 0
        self.meta_step_rule = META_STEP_RULES["image"]
        self.meta_updates = 0
        self.last_meta_loss = float("nan")
        self._named: list[tuple[str, Tensor]] = []

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        run.require_held_out(self.name, "its meta loss")
        t_val = self.hparams["t_val"]
        self.t_val = int(t_val) if t_val is not None else default_t_val(
            run.scale, run.horizon.steps_per_epoch, run.horizon.epochs)
        self.meta_step_rule = META_STEP_RULES.get(run.task.kind, META_STEP_RULES["image"])
        names = run.param_names or [f"param{i}" for i in range(len(run.params))]
        self._named = list(zip(names, run.params, strict=True))

    def is_meta_step(self, step: StepInfo) -> bool:
        """Whether ``step`` makes a meta update: every ``t_val`` in-epoch steps, counted as
        the official script of the run's kind counts them (:data:`META_STEP_RULES`)."""
        if self.meta_step_rule == META_STEP_RULES["text"]:
            return step.index_in_epoch % self.t_val == 0
        return (step.index_in_epoch + 1) % self.t_val == 0

    def lookahead_backward(self, lr: Tensor) -> float:
        """Meta loss at the look-ahead weights for LR ``lr``, back-propagated into whatever
        ``lr`` depends on.  Returns the meta loss."""
        run = self.run
        assert run is not None and run.held_out is not None
        directions = sgd_directions(run.optimizer)
        batch = run.held_out.next_batch()
        loss = run.held_out.loss(lookahead_params(self._named, directions, lr.reshape(())), batch)
        loss.backward()
        self.meta_updates += 1
        self.last_meta_loss = float(loss.detach())
        return self.last_meta_loss

    def _counters(self) -> dict[str, Any]:
        return {"meta_updates": self.meta_updates, "last_meta_loss": self.last_meta_loss,
                "meta_step_rule": self.meta_step_rule}

    def _load_counters(self, state: Mapping[str, Any]) -> None:
        self.meta_updates = int(state["meta_updates"])
        self.last_meta_loss = float(state["last_meta_loss"])
