"""Method ``mlrsnet-transfer``: a frozen, already meta-trained MLR-SNet drives the LR.

This is the paper's meta-test: the MLR-SNet learned on ResNet-18/CIFAR-10 is reused
unchanged on another architecture, dataset or modality.  All of the schedule logic (the
three-stage rule, ``gamma`` at each switch, the carried LSTM state) lives in
:class:`~mlrsnet.snet.scheduler.MLRSNetScheduler`; this module only adapts it to the method
contract, so the harness and a user's own loop run the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mlrsnet.harness.contract import Method, RunContext, StepInfo
from mlrsnet.snet.net import DEFAULT_CELL, check_cell
from mlrsnet.snet.scheduler import MLRSNetScheduler


class MLRSNetTransfer(Method):
    """Hyper-parameters:

    ``checkpoints``     ``"official"`` (the authors' release), ``"ours"`` (this project's
                        mini meta-training) or a directory written by method ``mlrsnet``.
    ``checkpoint_dir``  where the official files are (else ``$MLRSNET_CHECKPOINTS``).
    ``single``          an epoch label (e.g. 200) to use that one checkpoint throughout;
                        ``None`` for the paper's three-stage rule.
    ``gate_convention`` gate convention, ``"meta-train"`` or ``"meta-test-script"``.
    ``loss_window``     steps averaged for the "current training loss" at a stage switch
                        (``None``: a quarter of an epoch).
    """

    name: ClassVar[str] = "mlrsnet-transfer"
    description: ClassVar[str] = "frozen MLR-SNet transferred from a meta-training run (meta-test)"
    defaults: ClassVar[dict[str, Any]] = {
        "checkpoints": "official",
        "checkpoint_dir": None,
        "single": None,
        "gate_convention": DEFAULT_CELL,
        "loss_window": None,
    }

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        check_cell(self.hparams["gate_convention"])
        self.scheduler: MLRSNetScheduler | None = None

    def bind(self, run: RunContext) -> None:
        super().bind(run)
        h = self.hparams
        self.scheduler = MLRSNetScheduler(
            run.optimizer,
            checkpoints=h["checkpoints"],
            checkpoint_dir=h["checkpoint_dir"],
            num_classes=run.num_classes if run.kind == "image" else None,
            vocab_size=run.vocab_size if run.kind == "text" else None,
            epochs=run.epochs,
            steps_per_epoch=run.steps_per_epoch,
            single=h["single"],
            cell=h["gate_convention"],
            loss_window=h["loss_window"],
        )

    def lr(self, step: StepInfo) -> float:
        assert self.scheduler is not None, "bind() first"
        return self.scheduler.next_lr(step.loss)

    def extra_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"mlrsnet_cell": self.hparams["gate_convention"]}
        if self.scheduler is not None:
            sched = self.scheduler
            info.update({
                "mlrsnet_checkpoints": sched.checkpoints.name,
                "mlrsnet_stage_epochs": list(sched.stage_epochs),
                "mlrsnet_stage_starts": list(sched.stage_starts),
                "mlrsnet_parameters": sched.net_parameters,
                "mlrsnet_gamma": sched.gamma,
            })
        return info

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            assert self.scheduler is not None, "bind() before load_state_dict()"
            self.scheduler.load_state_dict(state["scheduler"])
