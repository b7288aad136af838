"""MARTHE: scheduling the LR via online hypergradients (Donini et al., IJCAI-PRICAI 2020).

MARTHE carries a *discounted* forward-mode tangent of the weights with respect to the LR
schedule and moves the LR after every step along the hypergradient it gives on held-out
data.  With ``A_t`` the Jacobian of one SGD step with respect to the optimiser state and
``B_t = -d_t`` its derivative with respect to the step's LR (:mod:`baselines._tangent`, the
recursion shared with RTHO, momentum, Nesterov, weight decay and the loop's clipping
included)::

    Z_{t+1}   = mu * A_t Z_t + B_t                         (Z_0 = 0)
    h_{t+1}   = grad E_val(w_{t+1}) . Z_{t+1}               (held-out gradient after the step)
    eta_{t+1} = max(eta_t - beta_t * h_{t+1}, 0)
    beta_{t+1} = max(beta_t + alpha * h_{t+1} * eta_{t+1}, 0)

``mu = 1`` is RTHO's exact derivative with respect to a constant LR (Franceschi et al.
2017; ``rtho`` here keeps its own official hyper-step, Adam every 100 steps), ``mu = 0``
gives ``Z_{t+1} = -d_t``, so ``eta_{t+1} = eta_t + beta * grad E_val(w_{t+1}) . d_t``:
hypergradient descent (Baydin et al. 2018) with the held-out gradient in place of the next
training gradient.  Both limits are in the paper and in adatune's README ("if you pass mu
as 1.0, the algorithm behaves as RTHO ... 0 ... similar to HD").

Defaults from the authors' PyTorch code, github.com/awslabs/adatune (``bin/rtho.py``
``cli_def``; ``adatune/mu_sgd.py``): ``mu = 0.99999``, hyper-LR ``beta_0 = 1e-8``, hyper-LR
adaptation ``alpha = 1e-6`` (``alpha = 0`` keeps ``beta`` fixed), initial LR 0.01 on image
tasks, a hyper-step after every step on ONE held-out mini-batch (``ValidationGradient``),
plain SGD on the LR (``hyper_optim = optim.SGD([lr], lr=hyper_lr)``) and the ``beta`` rule
above (``mu_sgd.py``: ``max(hyper_lr + alpha * hyper_grad * new_lr, 0)``).  The paper's
text on adapting ``beta`` could not be retrieved here; that rule follows adatune's code.

Where adatune's code departs from the paper's rule, the default is the paper's and
adatune's behaviour an option (``tests/baselines/test_marthe.py`` runs both rules):

* ``tangent_lr="current"``: ``A_t`` uses the LR of step ``t``, as ``A_t = dPhi_t/dw`` at
  ``eta_t``; adatune's recursion uses the initial LR throughout (``MuSGD`` reads
  ``self.lr`` once in ``__init__``): ``tangent_lr="initial"``.
* ``grad_clamp=None``: no clamping; adatune clamps gradient, Hessian-vector product and
  validation gradient element-wise to +-100 (``--grad-clipping 100``): ``grad_clamp=100``.
* ``positive=True``: ``eta >= 0``, the constraint of the problem the paper solves
  (``eta in R_{>=0}^T``, restated in adatune's README); adatune's hyper-step does not
  project (``positive=False``).
* validation data: the held-out part of the training split (``RunContext.held_out``);
  adatune draws its validation batches from the CIFAR *test* loader.
* weight decay: in ``A_t`` and ``B_t`` (the paper's dynamics ``Phi_t`` use the regularised
  training loss); adatune differentiates the loss without it (weight decay is added inside
  ``torch.optim.SGD``), and with momentum it skips the tangent on the first step.
* adatune's automatic ``mu`` (``mu < 0``) and ``first_order`` mode are not implemented:
  ``mu`` must lie in [0, 1].

The held-out loss runs in the model's current mode (train mode during training, as
adatune's ``ValidationGradient`` under ``net.train()``; BatchNorm's running buffers are
untouched), see :mod:`baselines._tangent`.

Language models: neither the paper nor adatune has a language-model setting.  On text tasks
``lr=None`` starts from the task's base LR (20) and ``hyper_lr=None`` is ``1e-8 * base_lr /
0.01`` (the same relative move); :meth:`Marthe.space` searches that regime.  This suite's
choices.

Cost: as RTHO per step (gradient with its graph plus one Hessian-vector product), plus one
held-out forward and backward per step.
"""

from __future__ import annotations

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

#: adatune's ``bin/rtho.py`` defaults.
ADATUNE_LR = 0.01
ADATUNE_HYPER_LR = 1e-8
TANGENT_LRS = ("current", "initial")


class Marthe(DirectionMethod):
    name: ClassVar[str] = "marthe"
    #: hook handles on the model, re-made by bind()
    transient: ClassVar[tuple[str, ...]] = ("_model_hooks",)
    uses_held_out: ClassVar[bool] = True
    differentiates_gradient: ClassVar[bool] = True  # the tangent goes through the gradient
    description: ClassVar[str] = "MARTHE: discounted online hypergradient LR schedule (Donini et al. 2020)"
    defaults: ClassVar[dict[str, Any]] = {
        #: None: 0.01 on image tasks (adatune), the task's base LR on text tasks.
        "lr": None,
        #: beta_0.  None: 1e-8 on image tasks (adatune), 1e-8 * base_lr / 0.01 on text tasks.
        "hyper_lr": None,
        #: the tangent's discount (the paper's mu; not the momentum): 1 = RTHO, 0 ~ HD.
        "mu": 0.99999,
        #: adaptation rate of beta (0: beta fixed).
        "alpha": 1e-6,
        "update_every": 1,
        #: held-out batches per hyper-step; None: the whole held-out set.
        "val_batches": 1,
        "positive": True,
        "tangent_lr": "current",
        "grad_clamp": None,
    }
    hparam_specs: ClassVar[dict[str, HParam]] = {
        "lr": HParam("number", low=0.0, low_open=True, allow_none=True),
        "hyper_lr": HParam("number", low=0.0, allow_none=True),
        # adatune's automatic mu (mu < 0) is not implemented
        "mu": HParam("number", low=0.0, high=1.0),
        "alpha": HParam("number", low=0.0),
        "update_every": HParam("int", low=1),
        "val_batches": HParam("int", low=1, allow_none=True),
        "positive": HParam("bool"),
        "tangent_lr": HParam("str", choices=TANGENT_LRS),
        "grad_clamp": HParam("number", low=0.0, low_open=True, allow_none=True),
    }
    search_space: ClassVar[dict[str, SearchDim]] = {
        "lr": ("loguniform", 1e-3, 0.5),
        "hyper_lr": ("loguniform", 1e-10, 1e-5),
        "mu": ("choice", [0.0, 0.9, 0.99, 0.999, 0.99999, 1.0]),
    }
    search_spaces: ClassVar[dict[str, dict[str, SearchDim]]] = {"text": {
        "lr": ("loguniform", 1.0, 40.0),
        "hyper_lr": ("loguniform", 1e-8, 1e-3),
        "mu": ("choice", [0.0, 0.9, 0.99, 0.999, 0.99999, 1.0]),
    }}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)  # values checked against hparam_specs
        self._lr: float | None = None  # set in bind() unless restored first
        self._beta: float | None = None
        self._steps_done = 0
        self._hyper_updates = 0
        self._last_hypergradient = float("nan")
        self._tangent = LRTangent(self.name)
        self._model_hooks: list[Any] = []

    # -- contract ---------------------------------------------------------------------------
    def bind(self, run: RunContext) -> None:
        super().bind(run)
        run.require_held_out(self.name, "its validation loss")
        if self._lr is None:
            self._lr = self.initial_lr()
        if self._beta is None:
            self._beta = self.initial_hyper_lr()
        self._model_hooks = second_order_hooks(run)

    def _text(self) -> bool:
        return self.run is not None and self.run.task.kind == "text"

    def initial_lr(self) -> float:
        """``lr``; ``None``: adatune's 0.01 on images, the task's base LR on text."""
        value = self.hparams["lr"]
        if value is not None:
            return float(value)
        return self.run.task.base_lr if self._text() else ADATUNE_LR

    def initial_hyper_lr(self) -> float:
        """``hyper_lr``; ``None``: adatune's 1e-8 on images, scaled to the base LR on text."""
        value = self.hparams["hyper_lr"]
        if value is not None:
            return float(value)
        return ADATUNE_HYPER_LR * self.run.task.base_lr / ADATUNE_LR if self._text() else ADATUNE_HYPER_LR

    def backward(self, loss: Tensor, params: Sequence[nn.Parameter]) -> None:
        """Gradients with their graph kept (for the Hessian-vector product), detached copies in ``p.grad``."""
        self._tangent.backward(loss, params)

    def lr(self, step: StepInfo) -> float:
        """The LR in force: it moves in the hyper-steps of :meth:`after_step`."""
        return self._lr

    def direction(self, step: StepInfo) -> list[Tensor]:
        tangent_lr = self._lr if self.hparams["tangent_lr"] == "current" else self.initial_lr()
        return self._tangent.direction(self.run, tangent_lr, discount=float(self.hparams["mu"]),
                                       clamp=self.hparams["grad_clamp"])

    def after_step(self, step: StepInfo) -> None:
        self._steps_done += 1
        if self._steps_done % int(self.hparams["update_every"]) == 0:
            self._hyper_update()

    def _hyper_update(self) -> None:
        batches = held_out_batches(self.run, self.hparams["val_batches"])
        h = hypergradient(self.run, self._tangent.z, batches, clamp=self.hparams["grad_clamp"])
        self._last_hypergradient = h
        self._lr -= self._beta * h
        if self.hparams["positive"]:
            self._lr = max(self._lr, 0.0)
        self._beta = max(self._beta + float(self.hparams["alpha"]) * h * self._lr, 0.0)
        self._hyper_updates += 1

    def extra_info(self) -> dict[str, Any]:
        hp = self.hparams
        info: dict[str, Any] = {
            "marthe_mu": float(hp["mu"]), "marthe_alpha": float(hp["alpha"]),
            "marthe_update_every": int(hp["update_every"]), "marthe_tangent_lr": hp["tangent_lr"],
            "marthe_grad_clamp": hp["grad_clamp"], "marthe_hyper_steps": self._hyper_updates,
            "marthe_val_batches": "whole held-out set" if hp["val_batches"] is None else int(hp["val_batches"]),
            **second_order_info(self._model_hooks),
        }
        if self.run is not None:
            info.update(marthe_lr0=self.initial_lr(), marthe_hyper_lr0=self.initial_hyper_lr(),
                        marthe_final_hyper_lr=self._beta)
        return info

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "lr": self._lr,
            "hyper_lr": self._beta,
            "steps_done": self._steps_done,
            **self._tangent.state_dict(),
            "hyper_updates": self._hyper_updates,
            "last_hypergradient": self._last_hypergradient,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("lr", "hyper_lr", "steps_done", "z", "q", "momentum_buffer", "hyper_updates"),
                     self.name)
        self._lr = float(state["lr"])
        self._beta = float(state["hyper_lr"])
        self._steps_done = int(state["steps_done"])
        self._tangent.load_state_dict(state)
        self._hyper_updates = int(state["hyper_updates"])
        self._last_hypergradient = float(state.get("last_hypergradient", float("nan")))
