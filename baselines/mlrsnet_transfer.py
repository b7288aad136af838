"""Method ``mlrsnet-transfer``: a frozen, already meta-trained MLR-SNet drives the LR.

This is the paper's meta-test: the MLR-SNet learned on ResNet-18/CIFAR-10 is reused
unchanged on another architecture, dataset or modality.  All of the schedule logic (the
three-stage rule, ``gamma`` at each switch, the carried LSTM state) lives in
:class:`~mlrsnet.snet.scheduler.MLRSNetScheduler`; this module only adapts it to the method
contract, so the harness and a user's own loop run the same code.

The optimiser whose LR it sets (hyper-parameter ``sgd``): by default SGD *without momentum*
with the task's weight decay, as the official meta-test script runs the transferred network
(``meta-test/meta_test.py:18,58``: ``--momentum`` default 0.0) and as it was meta-trained
(``meta-train/image-classification/meta_train.py:19,77``: momentum 0).  Its outputs are step
sizes of momentum-free SGD (about 0.76 on CIFAR-100 at the first stage); under a task's
Nesterov momentum 0.9 (EfficientNet, the supplement's Fig. 4, which the official code does
not include) they become effective steps about ten times larger, and training diverges.
``sgd = "task"`` runs the task's own optimiser settings instead (momentum, Nesterov), the
other reading of the supplement's Fig. 4; on the momentum-free tasks the two are the same.
The choice is ``mlrsnet_sgd`` in ``runs.method_info``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import HParam, Method, OptimSettings, RunContext, StepInfo
from mlrsnet.snet.checkpoint_sets import checkpoints_problem
from mlrsnet.snet.net import CELL_CONVENTIONS, check_cell
from mlrsnet.snet.scheduler import MLRSNetScheduler

#: Where ``gamma``'s training loss comes from (class docstring).
GAMMA_LOSSES = ("train-pass", "recent-mean")
#: The optimiser the LR drives (module docstring): the meta-test script's momentum-free SGD
#: with the task's weight decay, or the task's own settings.
SGD_CHOICES = ("meta-test-script", "task")


class MLRSNetTransfer(Method):
    """Hyper-parameters:

    ``checkpoints``     ``"official"`` (the authors' release), ``"ours"`` (this project's
                        mini meta-training) or a directory written by method ``mlrsnet``.
    ``checkpoint_dir``  where the official files are (else ``$MLRSNET_CHECKPOINTS``).
    ``single``          an epoch label (e.g. 200) to use that one checkpoint throughout;
                        ``None`` for the paper's three-stage rule.
    ``gate_convention`` ``"meta-train"`` or ``"meta-test-script"``; ``None`` (default):
                        the set's own (the official set's is the released meta-test
                        script's, ``"meta-test-script"``; ours records its own).
    ``gamma_loss``      the training loss ``gamma`` is computed from at the start and at each
                        stage switch: ``"train-pass"`` (default, as the official meta-test
                        script: a full eval-mode pass over the training split) or
                        ``"recent-mean"`` (the mean of the last ``loss_window`` mini-batch
                        losses: no extra pass).
    ``loss_window``     steps averaged by ``"recent-mean"`` (``None``: a quarter of an epoch).
    ``sgd``             ``"meta-test-script"`` (default: momentum 0, the task's weight decay)
                        or ``"task"`` (the task's momentum and Nesterov); module docstring.
    """

    name: ClassVar[str] = "mlrsnet-transfer"
    description: ClassVar[str] = "frozen MLR-SNet transferred from a meta-training run (meta-test)"
    defaults: ClassVar[dict[str, Any]] = {
        "checkpoints": "official",
        "checkpoint_dir": None,
        "single": None,
        "gate_convention": None,
        "gamma_loss": "train-pass",
        "loss_window": None,
        "sgd": "meta-test-script",
    }
    hparam_specs: ClassVar[dict[str, HParam]] = {
        "checkpoints": HParam("str", check=checkpoints_problem),
        "checkpoint_dir": HParam("str", allow_none=True),
        "single": HParam("int", low=1, allow_none=True),
        "gate_convention": HParam(choices=CELL_CONVENTIONS, allow_none=True),
        "gamma_loss": HParam(choices=GAMMA_LOSSES),
        "loss_window": HParam("int", low=1, allow_none=True),
        "sgd": HParam(choices=SGD_CHOICES),
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        if self.hparams["gate_convention"] is not None:
            check_cell(self.hparams["gate_convention"])
        if self.hparams["gamma_loss"] not in GAMMA_LOSSES:
            raise UserError(f"mlrsnet-transfer: gamma_loss must be one of {', '.join(GAMMA_LOSSES)}, "
                            f"not {self.hparams['gamma_loss']!r}")
        self.scheduler: MLRSNetScheduler | None = None

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        h = self.hparams
        self.scheduler = MLRSNetScheduler(
            run.optimizer,
            checkpoints=h["checkpoints"],
            checkpoint_dir=h["checkpoint_dir"],
            num_classes=run.task.num_outputs if run.task.kind == "image" else None,
            vocab_size=run.task.num_outputs if run.task.kind == "text" else None,
            epochs=run.horizon.epochs,
            steps_per_epoch=run.horizon.steps_per_epoch,
            single=h["single"],
            cell=h["gate_convention"],
            loss_window=h["loss_window"],
            reference_loss=run.train_loss if h["gamma_loss"] == "train-pass" else None,
        )

    def build_optimizer(self, params: Sequence[nn.Parameter], optim: OptimSettings,
                        initial_lr: float = 0.0) -> torch.optim.Optimizer:
        """The task's SGD, without its momentum unless ``sgd = "task"`` (module docstring)."""
        if self.hparams["sgd"] == "meta-test-script":
            optim = replace(optim, momentum=0.0, nesterov=False)
        return super().build_optimizer(params, optim, initial_lr)

    def lr(self, step: StepInfo) -> float:
        assert self.scheduler is not None, "bind() first"
        return self.scheduler.next_lr(step.loss)

    def extra_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"mlrsnet_cell": self.hparams["gate_convention"],
                                "mlrsnet_gamma_loss": self.hparams["gamma_loss"],
                                "mlrsnet_sgd": self.hparams["sgd"]}
        if self.run is not None:
            group = self.run.optimizer.param_groups[0]
            info["mlrsnet_sgd_momentum"] = group["momentum"]
            info["mlrsnet_sgd_nesterov"] = group["nesterov"]
        if self.scheduler is not None:
            sched = self.scheduler
            info.update({
                "mlrsnet_checkpoints": sched.checkpoints.name,
                "mlrsnet_stage_epochs": list(sched.stage_epochs),
                "mlrsnet_stage_starts": list(sched.stage_starts),
                "mlrsnet_parameters": sched.net_parameters,
                "mlrsnet_gamma": sched.gamma,
                "mlrsnet_cell": sched.cell,
                # the full passes gamma needs: (step, loss) and their wall time, the cost of
                # "train-pass" over "recent-mean"
                "mlrsnet_gamma_reference": [[step, loss] for step, loss, _ in sched.reference_calls],
                "mlrsnet_train_pass_s": sum(sec for _, _, sec in sched.reference_calls),
            })
        return info

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            assert self.scheduler is not None, "bind() before load_state_dict()"
            self.scheduler.load_state_dict(state["scheduler"])
