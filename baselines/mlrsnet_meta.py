"""Method ``mlrsnet``: meta-train MLR-SNet while it schedules the LR of the run.

Every ``t_val`` steps the MLR-SNet parameters ``phi`` take one Adam step (lr 1e-3, weight
decay 1e-4) on the loss of a held-out meta batch evaluated at the one-step look-ahead
weights ``w' = w - gamma * A(loss; phi) * d``, where ``d`` is exactly the direction
``optimizer.step()`` is about to apply (weight decay, momentum buffer, Nesterov, and the
task's gradient clipping, which the loop already applied to ``p.grad``).

Why this is exact and cheap: ``d`` does not depend on ``phi``, so
``dL/dphi = -gamma * <grad L(w'), d> * dA/dphi`` needs no second-order term.  The training
gradient of the current step is reused (no second forward/backward on the training batch),
and ``w'`` is evaluated with ``torch.func.functional_call`` through ``run.held_out.loss``, so
the model is neither rebuilt nor copied: one meta update costs one forward and backward on
a meta batch plus a few element-wise passes over the weights.  (The official code rebuilds
the model and differentiates the training gradient with ``create_graph``.)

The look-ahead machinery (:class:`baselines._lookahead.LookaheadMetaMethod`) is shared with the Meta-SGD
baseline, which learns one LR per step instead of a network.

Choices where this differs in detail from the official script, stated so results can be
read correctly:

* ``t_val``: a meta update happens every ``t_val`` in-epoch steps, counted as the official
  script of the run's kind counts them (:data:`baselines._lookahead.META_STEP_RULES`): image
  runs at in-epoch step ``i`` when ``(i + 1) % t_val == 0`` (``meta-train/image-classification/
  meta_train.py:88``: i = 299 of each 383-step CIFAR epoch, one per epoch), language models
  when ``i % t_val == 0`` (``meta-train/language-modeling/meta_train.py:164,170``: windows 0,
  300 and 600 of each 829-window PTB epoch, three per epoch, the first window of every epoch
  included).  The rule in force is ``meta_step_rule`` in ``runs.method_info``.
  ``t_val=None`` means 300 at the paper's scale (``run.scale == "paper"``)
  and otherwise ``max(1, min(steps_per_epoch, round(total_steps / 200)))``: the official
  ResNet-18/CIFAR-10 run made 200 meta updates (one per epoch, 383 steps per epoch), and a
  reduced scale keeps about that many, at most one per step.
* ``hyper_lr`` (Adam's step on ``phi``), left None: the official 1e-3 at every scale
  (``hyper_lr_rule = "official"``, the default: ``--lr`` default 0.001 of both official scripts,
  ``meta-train/image-classification/meta_train.py:21,76`` and
  ``meta-train/language-modeling/meta_train.py:26,146``).  ``hyper_lr_rule = "adam-path"`` keeps
  this suite's earlier rule for reduced scales as a named option: ``0.4 / meta updates``
  (:func:`default_hyper_lr`), twice the official run's "Adam path" of 200 x 1e-3, chosen to
  bring the learned LR's decay into the first third of a short run.  Measured (issue 22;
  ``mlrsnet-bench train --task resnet18-cifar10 --method mlrsnet --profile cpu`` with
  ``--hparam hyper_lr_rule=...``): the adam-path rule makes the LR fall below 10 % of its start
  at 20-25 % of training where the official run does at 31 %, and ends lower (ResNet-18/CIFAR-10
  cpu 36.4 % with adam-path, 40.2 % with 1e-3; 2-layer LSTM/PTB 633 against 558 ppl).  The rule
  in force is ``mlrsnet_hyper_lr_rule`` in ``runs.method_info``.  The earlier measurement on
  ``resnet18-cifar10`` mini, seed 0, LR relative to the first (``benchmarks/mlrsnet_lr_trace.py``;
  ``shape_rms``: RMS over 101 fractions of log10(ours / official), both relative to their
  first LR; the official curve against itself is 0; official ResNet-18/CIFAR-10 run relative to
  its first LR: 0.736 / 0.081 / 0.065 / 0.044 at 10 / 33 / 66 / 100 % of training):

  =========================  =======  ========  =====  =====  =====  =====  =========
  rule                       updates  hyper_lr  10 %   33 %   66 %   100 %  shape_rms
  =========================  =======  ========  =====  =====  =====  =====  =========
  official (paper)           200      1e-3      0.736  0.081  0.065  0.044  0
  t_val 1, official 1e-3     160      1e-3      0.875  0.744  0.055  0.040  0.449
  t_val 1, path 0.2          160      1.25e-3   0.834  0.624  0.044  0.036  0.377
  t_val 1                    160      2e-3      0.719  0.132  0.023  0.024  0.284
  t_val 1, path 0.4          160      2.5e-3    0.664  0.065  0.022  0.025  0.256
  t_val 1                    160      3e-3      0.550  0.049  0.020  0.017  0.304
  t_val 2, path 0.4          80       5e-3      0.698  0.261  0.011  0.010  0.523
  t_val 4, path 0.2          40       5e-3      0.721  0.381  0.014  0.005  0.580
  one per epoch, path 0.2    5        4e-2      1.003  0.361  0.005  0.001  0.836
  =========================  =======  ========  =====  =====  =====  =====  =========

  The adam-path rule matches the official curve's shape best at mini (shape_rms 0.256) but
  its runs end lower; the official step keeps the LR high for longer, which the short runs
  here reward.  On a run of a few epochs the one-step look-ahead still cuts the LR far
  earlier than a tuned MultiStep does (a 20x fall within a 4-epoch PTB run): a short-horizon
  effect of the look-ahead objective, reported as such.
* ``bottleneck`` (width of the cell's two-layer maps), left None: what the official script of
  the task's kind builds (:data:`mlrsnet.snet.net.BOTTLENECKS`): 25 for images (the released
  checkpoints' shape, 11,776 parameters), 50 for language models (23,101 parameters).
  Checkpoints record their width in their shapes, so either loads for transfer.
* On a meta step the official code advances the LSTM state twice (once for the look-ahead,
  once for the real step); here it advances once: the look-ahead and the real step read the
  same state, the real step with the freshly updated ``phi`` (as in the official code).
* Initialisation of ``phi`` (hyper-parameter ``init``): by default what the official script
  of the task's kind runs.  The image script (``meta-train/image-classification/module.py``)
  builds the cell from ``nn.Linear`` layers that its ``init_weights`` never matches, so the
  network starts from PyTorch's default ``nn.Linear`` initialisation (``"torch-default"``);
  the language-model script's cell is made of ``MetaLinear`` layers that ``init_weights``
  does match: cell weights U(-0.1, 0.1) (``"uniform-0.1"``).  Either can be forced; the
  choice is recorded as ``mlrsnet_init`` in ``runs.method_info`` and in the manifest.
* ``gamma``'s starting loss ``L0`` (hyper-parameter ``initial_loss_from``): by default
  ``"train-pass"``, the mean training loss over one full eval-mode pass of the training split
  before any training step, as both official meta-training scripts compute it
  (``compute_loss_accuracy`` on the training loader; the language-model script's initial
  training perplexity).  ``"first-batch"`` (this suite's earlier rule) takes the first
  mini-batch loss in train mode instead; at the paper's ResNet-18 initialisation it is about
  2.4 where the full pass gives 2.8-3.6, so its LRs start lower.  ``initial_loss`` overrides
  both.  The pass runs at ``bind``; a resumed run restores ``gamma`` from its state (the pass
  is repeated once and discarded).  ``L0``, its source and the pass's wall time are recorded
  in ``runs.method_info``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from mlrsnet.baselines._lookahead import (
    META_LR,
    PAPER_META_UPDATES,
    LookaheadMetaMethod,
    meta_steps_per_epoch,
)

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import HParam, RunContext, StepInfo
from mlrsnet.snet.checkpoint_sets import checkpoint_filename, sha256_of, write_manifest
from mlrsnet.snet.gamma import TaskScale
from mlrsnet.snet.net import (
    BOTTLENECKS,
    DEFAULT_CELL,
    INIT_TORCH_DEFAULT,
    INIT_UNIFORM,
    LSTMState,
    MLRSNet,
    check_cell,
    check_init,
)

#: Where gamma's starting loss comes from (module docstring).
INITIAL_LOSS_SOURCES = ("train-pass", "first-batch")
#: The initialisation each official meta-training script actually runs (module docstring).
OFFICIAL_INIT = {"image": INIT_TORCH_DEFAULT, "text": INIT_UNIFORM}
#: The rules for ``hyper_lr`` left None (module docstring): ``"official"`` 1e-3 at every
#: scale, ``"adam-path"`` the earlier reduced-scale rule.
HYPER_LR_RULES = ("official", "adam-path")
#: The ``"adam-path"`` rule: Adam's step on ``phi`` times the run's meta updates, twice the
#: official run's 200 x 1e-3 (module docstring: measured on ResNet-18/CIFAR-10 mini).
SMALL_PROFILE_ADAM_PATH = 2 * PAPER_META_UPDATES * META_LR


def default_hyper_lr(scale: str, meta_updates: int, rule: str = "official") -> float:
    """Adam's step on ``phi`` when ``hyper_lr`` is None: the official 1e-3, or with
    ``rule = "adam-path"`` at a reduced scale :data:`SMALL_PROFILE_ADAM_PATH` spread over the
    run's ``meta_updates``."""
    if rule == "official" or scale == "paper" or meta_updates < 1:
        return META_LR
    return SMALL_PROFILE_ADAM_PATH / meta_updates


class MLRSNetMeta(LookaheadMetaMethod):
    """Hyper-parameters: ``t_val`` (see module doc), ``hyper_lr`` / ``hyper_weight_decay``
    (Adam on ``phi``; ``hyper_lr`` None: :func:`default_hyper_lr` under ``hyper_lr_rule``),
    ``bottleneck`` (None: the official script of the task's kind), ``gate_convention`` (the
    LSTM gate layout, see :mod:`mlrsnet.snet.net`), ``initial_loss`` (override ``L0`` of
    ``gamma``)."""

    name: ClassVar[str] = "mlrsnet"
    #: the train pass's wall time (repeated and discarded on resume) is a timing, not state
    transient: ClassVar[tuple[str, ...]] = ("pass_seconds",)
    description: ClassVar[str] = "MLR-SNet meta-trained during the run (one-step look-ahead)"
    defaults: ClassVar[dict[str, Any]] = {
        **LookaheadMetaMethod.defaults,
        "gate_convention": DEFAULT_CELL,
        "initial_loss": None,
        "initial_loss_from": "train-pass",
        #: None: what the official script of the task's kind runs ("torch-default" for
        #: images, "uniform-0.1" for language models); see :data:`mlrsnet.snet.net.INITS`.
        "init": None,
        #: None: :func:`default_hyper_lr` under ``hyper_lr_rule``.
        "hyper_lr": None,
        "hyper_lr_rule": "official",
        #: None: the official script of the task's kind (25 images, 50 language models).
        "bottleneck": None,
    }
    hparam_specs: ClassVar[dict[str, HParam]] = {
        "hyper_lr": HParam("number", low=0.0, low_open=True, allow_none=True),
        "hyper_lr_rule": HParam(choices=HYPER_LR_RULES),
        "bottleneck": HParam("int", low=1, allow_none=True),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        check_cell(self.hparams["gate_convention"])
        if self.hparams["init"] is not None:
            check_init(self.hparams["init"])
        if self.hparams["initial_loss_from"] not in INITIAL_LOSS_SOURCES:
            raise UserError(f"mlrsnet: initial_loss_from must be one of {', '.join(INITIAL_LOSS_SOURCES)}, "
                            f"not {self.hparams['initial_loss_from']!r}")
        self.init: str | None = None
        self.bottleneck: int | None = None
        self.hyper_lr = META_LR
        self.planned_meta_updates = 0
        self.initial_loss: float | None = None
        self.initial_loss_source: str | None = None
        self.pass_seconds = 0.0
        self.net: MLRSNet | None = None
        self.meta_optimizer: torch.optim.Adam | None = None
        self.task_scale: TaskScale | None = None
        self.state: LSTMState | None = None
        self.gamma: float | None = None
        self.saved: dict[int, str] = {}

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        self.task_scale = TaskScale.of(num_classes=run.task.num_outputs if run.task.kind == "image" else None,
                                       vocab_size=run.task.num_outputs if run.task.kind == "text" else None)
        # The MLR-SNet lives on the CPU (it is tiny); float64 models get a float64 network.
        dtype = run.params[0].dtype if run.params and run.params[0].is_floating_point() else torch.float32
        generator = torch.Generator().manual_seed(run.seed)
        self.init = self.hparams["init"] or OFFICIAL_INIT[run.task.kind]
        self.bottleneck = self.hparams["bottleneck"] or BOTTLENECKS[run.task.kind]
        self.net = MLRSNet(cell=self.hparams["gate_convention"], generator=generator,
                           init=self.init, bottleneck=self.bottleneck).to(dtype=dtype)
        self.planned_meta_updates = run.horizon.epochs * meta_steps_per_epoch(self.meta_step_rule, self.t_val,
                                                                      run.horizon.steps_per_epoch)
        beta = self.hparams["hyper_lr"]
        self.hyper_lr = float(beta) if beta is not None else default_hyper_lr(
            run.scale, self.planned_meta_updates, self.hparams["hyper_lr_rule"])
        self.meta_optimizer = torch.optim.Adam(self.net.parameters(), lr=self.hyper_lr,
                                               weight_decay=self.hparams["hyper_weight_decay"])
        self.state = self.net.initial_state()
        if self.hparams["initial_loss"] is not None:
            self.initial_loss, self.initial_loss_source = float(self.hparams["initial_loss"]), "override"
        elif self.hparams["initial_loss_from"] == "train-pass" and run.train_loss is not None:
            started = time.perf_counter()
            self.initial_loss, self.initial_loss_source = float(run.train_loss()), "train-pass"
            self.pass_seconds = time.perf_counter() - started
        if self.initial_loss is not None:
            self.gamma = self.task_scale.gamma(self.initial_loss)

    def lr(self, step: StepInfo) -> float:
        assert self.net is not None and self.task_scale is not None and self.state is not None
        loss = float(step.loss.detach())
        if self.gamma is None:  # "first-batch" (or no train pass available)
            self.initial_loss, self.initial_loss_source = loss, "first-batch"
            self.gamma = self.task_scale.gamma(loss)
        x = self.task_scale.net_input(loss)
        if self.is_meta_step(step):
            out, _ = self.net(x, self.state)
            self.meta_optimizer.zero_grad(set_to_none=True)
            self.lookahead_backward(self.gamma * out)
            self.meta_optimizer.step()
        with torch.no_grad():
            out, self.state = self.net(x, self.state)
        return self.gamma * float(out)

    # -- checkpoints in the released layout -----------------------------------------------
    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        run = self.run
        if run is None or run.artifact_dir is None or self.net is None:
            return
        folder = Path(run.artifact_dir)
        folder.mkdir(parents=True, exist_ok=True)
        fname = checkpoint_filename(epoch + 1)
        tmp = folder / (fname + ".tmp")
        torch.save({k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}, tmp)
        tmp.replace(folder / fname)
        self.saved[epoch + 1] = fname
        write_manifest(folder, self.manifest())

    def manifest(self) -> dict[str, Any]:
        run = self.run
        assert run is not None and self.task_scale is not None
        folder = Path(run.artifact_dir) if run.artifact_dir else None
        return {
            "task": run.task.name, "scale": run.scale, "seed": run.seed,
            "cell": self.hparams["gate_convention"], "init": self.init, "bottleneck": self.bottleneck,
            "epochs": run.horizon.epochs,
            "completed_epochs": max(self.saved, default=0),
            "kind": run.task.kind, "outputs": self.task_scale.outputs, "t_val": self.t_val,
            "gamma": self.gamma, "meta_updates": self.meta_updates,
            "hyper_lr": self.hyper_lr, "hyper_weight_decay": self.hparams["hyper_weight_decay"],
            "files": {str(e): f for e, f in sorted(self.saved.items())},
            "sha256": {str(e): sha256_of(folder / f) for e, f in sorted(self.saved.items())} if folder else {},
            "written_by": "baselines.mlrsnet_meta (method 'mlrsnet')",
            "torch": torch.__version__,
        }

    def extra_info(self) -> dict[str, Any]:
        count = self.net.num_parameters() if self.net is not None else MLRSNet().num_parameters()
        info = {"mlrsnet_cell": self.hparams["gate_convention"], "mlrsnet_init": self.init,
                "meta_parameters": count,
                "mlrsnet_parameters": count, "t_val": self.t_val, "mlrsnet_gamma": self.gamma,
                "mlrsnet_hyper_lr": self.hyper_lr, "planned_meta_updates": self.planned_meta_updates,
                "mlrsnet_hyper_lr_rule": ("explicit" if self.hparams["hyper_lr"] is not None
                                          else self.hparams["hyper_lr_rule"]),
                "mlrsnet_bottleneck": self.bottleneck,
                "mlrsnet_initial_loss": self.initial_loss,
                "mlrsnet_initial_loss_from": self.initial_loss_source,
                "mlrsnet_train_pass_s": self.pass_seconds,
                **self._counters()}
        if self.run is not None and self.run.artifact_dir:
            info["mlrsnet_checkpoint_dir"] = self.run.artifact_dir
        return info

    def state_dict(self) -> dict[str, Any]:
        assert self.net is not None and self.meta_optimizer is not None and self.state is not None
        return {"net": self.net.state_dict(), "meta_optimizer": self.meta_optimizer.state_dict(),
                "h": self.state.h.clone(), "c": self.state.c.clone(), "gamma": self.gamma,
                "initial_loss": self.initial_loss, "initial_loss_from": self.initial_loss_source,
                "saved": dict(self.saved), "cell": self.hparams["gate_convention"], **self._counters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        assert self.net is not None and self.meta_optimizer is not None
        if state["cell"] != self.hparams["gate_convention"]:
            raise ValueError(f"state was made with cell {state['cell']!r}, not {self.hparams['gate_convention']!r}")
        self.net.load_state_dict(state["net"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.state = LSTMState(state["h"].clone(), state["c"].clone())
        self.gamma = state["gamma"]
        self.initial_loss = state.get("initial_loss")
        self.initial_loss_source = state.get("initial_loss_from")
        self.saved = {int(k): v for k, v in state["saved"].items()}
        self._load_counters(state)
