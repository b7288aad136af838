"""RTHO: real-time hyper-parameter optimisation of the LR (Franceschi et al., ICML 2017).

RTHO carries the forward-mode derivative ``Z = dw/d eta`` of the weights with respect to
the learning rate alongside training, never resetting it, and every ``update_every`` steps
moves the LR along the hypergradient ``grad E_val(w_{t+1}) . Z_{t+1}`` of a held-out loss.
The recursion of ``Z`` (and of the momentum buffer's tangent), with weight decay, momentum,
Nesterov and the loop's gradient clipping, is :mod:`baselines._tangent`'s, shared with
MARTHE (RTHO is its discount ``mu = 1``: the exact derivative).  ``E_val`` is the loss on
held-out batches of the training split (``RunContext.held_out``; never the test split).

Settings follow the official code:

* hypergradient on the WHOLE held-out set (``val_batches=None``, the default): FAR-HO's
  RTHO example feeds the whole validation set to the outer objective
  (``far_ho/examples/autoMLDemos``, ``validation_set.create_supplier(x, y)`` without a
  batch size; ``far_ho/examples/datasets.py``: no batch size = the entire set).  Here that
  is one pass of the held-out source (``batches_per_pass`` batches of the training batch
  size, weighted by their size: the gradient of the mean held-out loss), so the supplement's
  Fig. 3 sweep over the held-out size (``[overrides] holdout = 1000 ... 5000``) changes the
  hypergradient.  An int ``val_batches`` averages that many batches instead (the previous
  default here was 1; adatune's PyTorch RTHO uses one validation mini-batch per step).
* hyper-step every ``update_every`` steps: the official value is 100
  (``hyper_batch_size = 100`` in FAR-HO's RTHO demo, 5,000 inner steps -> 50 hyper-steps;
  also RFHO's ``rfho/examples/all_methods_on_mnist.py``), used at the paper's scale.
  The short profiles have too few steps for that (``mini`` ResNet-18 would make one
  hyper-step, ``smoke`` none), so ``update_every=None`` (the default) is
  ``max(1, min(100, total_steps // 20))`` there: at least about 20 hyper-steps per run, never
  rarer than the official 100.  The value in force is ``rtho_update_every`` in
  ``runs.method_info``.
* hyper-optimiser: Adam on the LR with hyper-LR 5e-3 (``hyper_learning_rate=5.e-3`` of
  RFHO's ``rfho/experiments/rtho_phonetic_embedding.py``, the paper's large-scale RTHO run),
  beta1 0.9, beta2 0.999, epsilon 1e-8 *inside* the square root and bias correction
  ``sqrt(1 - beta2^k) / (1 - beta1^k)`` (``rfho.doh.adam_dynamics``);
* positivity projection ``eta <- max(eta, 0)`` after every hyper-update (``positivity``);
* initial LR 0.075 on image tasks (``learning_rate=.075`` of the same script).

Language models: neither the RTHO paper nor its code has a language-model setting, and the
image defaults cannot reach these tasks' regime (base LR 20, clipping 0.25): Adam moves the
LR by about ``hyper_lr`` per hyper-step, so from 0.075 with 5e-3 it would take thousands of
hyper-steps to get near 20.  On text tasks ``lr=None`` therefore starts from the task's base
LR (``RunContext.base_lr``) and ``hyper_lr=None`` is 5e-3 scaled by ``base_lr / 0.075``
(the same relative move per hyper-step as on images); :meth:`RealTimeHO.space` searches the
LR and hyper-LR around that regime for text.  Both are this suite's choices.

The held-out loss runs in the model's current mode, train mode during training (BatchNorm
with the held-out batch's statistics, running buffers untouched; dropout on), see
:mod:`baselines._tangent`.

Cost: every step takes the gradient with its graph and one Hessian-vector product through
it; the held-out pass comes once per ``update_every`` steps.  BatchNorm's and the
convolutions' second-order terms come from :mod:`baselines._second_order` (exact, re-derived
on the native first-order kernels; ``second_order_layers`` in ``runs.method_info`` counts the
layers): on the CPU ``mini`` ResNet-18 one step is 3.50x a plain SGD step against 4.46x with
autograd's generic double backward (``benchmarks/perf/adaptive_overhead.py --methods rtho
--steps 60 --threads 1``, both under the same load, 2 cores busy with 2 other processes).
For convolutions the exact product costs about twice the first-order work whichever way it
is taken (two more forward convolutions and two more backward ones per layer), so about 3x a
plain step is a floor before BatchNorm and element-wise work.  Forward-over-reverse
(``torch.func.jvp`` of the gradient, or dual parameters through the same forward) was
measured no faster than the generic double backward on that CPU (4.85x and 4.47x against
4.45x, interleaved medians of one step).
cuDNN's RNN kernels have no double backward, so on a GPU the model's RNN modules run with
cuDNN switched off (forward hooks set while RTHO is bound).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from mlrsnet.baselines._direction import require_keys
from mlrsnet.baselines._tangent import (
    LRTangent,
    held_out_batches,
    hypergradient,
    second_order_hooks,
    second_order_info,
)
from torch import Tensor, nn

from mlrsnet.harness.contract import (
    DirectionMethod,
    HParam,
    RunContext,
    SearchDim,
    StepInfo,
)

_HYPER_BETA1 = 0.9
_HYPER_BETA2 = 0.999
_HYPER_EPSILON = 1e-8
#: Official values (RFHO / FAR-HO, see the module docstring).
OFFICIAL_LR = 0.075
OFFICIAL_HYPER_LR = 5e-3
OFFICIAL_UPDATE_EVERY = 100
#: Hyper-steps a short profile makes at least (about; ``update_every=None``).
MIN_HYPER_STEPS = 20


def scaled_update_every(scale: str, total_steps: int, official: int = OFFICIAL_UPDATE_EVERY) -> int:
    """The official interval at the paper's scale; at a reduced scale often enough for about
    :data:`MIN_HYPER_STEPS` hyper-steps per run, never rarer than the official one."""
    if scale == "paper":
        return official
    return max(1, min(official, total_steps // MIN_HYPER_STEPS))


class RealTimeHO(DirectionMethod):
    name: ClassVar[str] = "rtho"
    #: hook handles on the model, re-made by bind()
    transient: ClassVar[tuple[str, ...]] = ("_model_hooks",)
    uses_held_out: ClassVar[bool] = True
    differentiates_gradient: ClassVar[bool] = True  # the tangent goes through the gradient
    description: ClassVar[str] = "Real-time forward-mode hypergradient LR optimisation (Franceschi et al. 2017)"
    defaults: ClassVar[dict[str, Any]] = {
        #: None: 0.075 on image tasks (official), the task's base LR on text tasks.
        "lr": None,
        #: None: 5e-3 on image tasks (official), 5e-3 * base_lr / 0.075 on text tasks.
        "hyper_lr": None,
        #: None: 100 at the paper's scale (official), max(1, min(100, steps // 20)) at a reduced one.
        "update_every": None,
        #: None: the whole held-out set (official); an int: that many held-out batches.
        "val_batches": None,
        "positive": True,
    }
    search_space: ClassVar[dict[str, SearchDim]] = {
        "lr": ("loguniform", 1e-3, 0.5),
        "hyper_lr": ("loguniform", 1e-4, 1e-1),
        "update_every": ("choice", [10, 50, 100, 500]),
    }
    hparam_specs: ClassVar[dict[str, HParam]] = {
        "lr": HParam("number", low=0.0, low_open=True, allow_none=True),
        "hyper_lr": HParam("number", low=0.0, allow_none=True),
        "update_every": HParam("int", low=1, allow_none=True),
        "val_batches": HParam("int", low=1, allow_none=True),
        "positive": HParam("bool"),
    }
    #: Language models (base LR 20): this suite's range around the tasks' regime.
    search_spaces: ClassVar[dict[str, dict[str, SearchDim]]] = {"text": {
        "lr": ("loguniform", 1.0, 40.0),
        "hyper_lr": ("loguniform", 1e-2, 10.0),
        "update_every": ("choice", [10, 50, 100, 500]),
    }}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)  # values checked against hparam_specs
        self._lr: float | None = None  # set in bind() unless restored first
        self._update_every: int | None = None
        self._steps_done = 0
        self._tangent = LRTangent(self.name)
        self._hyper_m = 0.0
        self._hyper_v = 0.0
        self._hyper_updates = 0
        self._last_hypergradient = float("nan")
        self._model_hooks: list[Any] = []
        self._val_batches_used: int | None = None

    # -- contract ---------------------------------------------------------------------------
    def bind(self, run: RunContext) -> None:
        super().bind(run)
        run.require_held_out(self.name, "its validation loss")
        if self._lr is None:
            self._lr = self.initial_lr()
        value = self.hparams["update_every"]
        self._update_every = (scaled_update_every(run.scale, run.horizon.total_steps)
                              if value is None else int(value))
        self._model_hooks = second_order_hooks(run)

    def initial_lr(self) -> float:
        """``lr``; ``None``: the official 0.075 on images, the task's base LR on text."""
        value = self.hparams["lr"]
        if value is not None:
            return float(value)
        return self.run.task.base_lr if self.run is not None and self.run.task.kind == "text" else OFFICIAL_LR

    def hyper_lr(self) -> float:
        """``hyper_lr``; ``None``: the official 5e-3 on images, scaled to the base LR on text."""
        value = self.hparams["hyper_lr"]
        if value is not None:
            return float(value)
        if self.run is not None and self.run.task.kind == "text":
            return OFFICIAL_HYPER_LR * self.run.task.base_lr / OFFICIAL_LR
        return OFFICIAL_HYPER_LR

    def backward(self, loss: Tensor, params: Sequence[nn.Parameter]) -> None:
        """Gradients with their graph kept (for the Hessian-vector product), detached copies in ``p.grad``."""
        self._tangent.backward(loss, params)

    def lr(self, step: StepInfo) -> float:
        """The LR in force: it moves only in the hyper-steps of :meth:`after_step`."""
        return self._lr

    def direction(self, step: StepInfo) -> list[Tensor]:
        """``d_t`` of the task's SGD (momentum, Nesterov, weight decay kept here), and the
        tangent ``Z`` advanced to ``Z_{t+1}`` with the LR of this step."""
        return self._tangent.direction(self.run, self._lr)

    def after_step(self, step: StepInfo) -> None:
        self._steps_done += 1
        if self._steps_done % self._update_every == 0:
            self._hyper_update()

    def extra_info(self) -> dict[str, Any]:
        run = self.run
        info: dict[str, Any] = {"rtho_update_every": self._update_every, "rtho_lr0": self.initial_lr(),
                                "rtho_hyper_lr": self.hyper_lr(), "rtho_hyper_steps": self._hyper_updates,
                                **second_order_info(self._model_hooks)}
        if run is not None and run.held_out is not None:
            val = self.hparams["val_batches"]
            info["rtho_val_batches"] = ("whole held-out set" if val is None else int(val))
            per_pass = run.held_out.batches_per_pass
            if per_pass is not None:
                info["rtho_held_out_batches_per_pass"] = int(per_pass)
            if self._val_batches_used is not None:
                info["rtho_held_out_batches_per_hyper_step"] = self._val_batches_used
        return info

    # -- the hyper-step --------------------------------------------------------------------
    def _hyper_update(self) -> None:
        batches = held_out_batches(self.run, self.hparams["val_batches"])
        self._val_batches_used = batches
        value = hypergradient(self.run, self._tangent.z, batches)
        self._last_hypergradient = value
        self._hyper_m = _HYPER_BETA1 * self._hyper_m + (1 - _HYPER_BETA1) * value
        self._hyper_v = _HYPER_BETA2 * self._hyper_v + (1 - _HYPER_BETA2) * value**2
        k = self._hyper_updates + 1
        step_size = self.hyper_lr() * math.sqrt(1 - _HYPER_BETA2**k) / (1 - _HYPER_BETA1**k)
        self._lr -= step_size * self._hyper_m / math.sqrt(self._hyper_v + _HYPER_EPSILON)
        if self.hparams["positive"]:
            self._lr = max(self._lr, 0.0)
        self._hyper_updates = k

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self._lr,
            "steps_done": self._steps_done,
            **self._tangent.state_dict(),
            "hyper_m": self._hyper_m,
            "hyper_v": self._hyper_v,
            "hyper_updates": self._hyper_updates,
            "last_hypergradient": self._last_hypergradient,
            "val_batches_used": self._val_batches_used,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = ("lr", "steps_done", "z", "q", "momentum_buffer", "hyper_m", "hyper_v", "hyper_updates")
        require_keys(state, keys, self.name)
        self._lr = float(state["lr"])
        self._steps_done = int(state["steps_done"])
        self._tangent.load_state_dict(state)
        self._hyper_m = float(state["hyper_m"])
        self._hyper_v = float(state["hyper_v"])
        self._hyper_updates = int(state["hyper_updates"])
        self._last_hypergradient = float(state.get("last_hypergradient", float("nan")))
        self._val_batches_used = state.get("val_batches_used")
