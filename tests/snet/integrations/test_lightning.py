"""The Lightning adapter, against real Lightning (a tiny model, a few steps, CPU).

Reference: the per-step mean of the losses each ``training_step`` returned (recorded by the
module itself), fed to a plain MLRSNetScheduler; the LR of each optimizer step is read by the
module's own ``on_before_optimizer_step`` (after the callbacks', before the update).  Also:
the textbook ``configure_optimizers`` set-ups fail or warn instead of running one step late,
and a fit resumed from a Lightning checkpoint continues the schedule exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from mlrsnet.snet.integrations.lightning import MLRSNetCallback
from mlrsnet.snet.scheduler import NO_LOSS_ERROR, MLRSNetScheduler

BATCHES = 8  # per epoch


def loader() -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * 16, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long() + 2 * (x[:, 5:8].sum(1) > 0).long()
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


class Module(pl.LightningModule):
    def __init__(self, scheduler_config: dict | None = None) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        self.scheduler_config = scheduler_config
        self.losses: list[float] = []
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.losses.append(float(loss.detach()))
        self.log("train_loss", loss, on_step=True)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.0, momentum=0.9)
        if self.scheduler_config is None:
            return opt
        sched = MLRSNetScheduler(opt, "ours", num_classes=4, total_steps=3 * BATCHES)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, **self.scheduler_config}}


def fit(module: Module, callbacks: list, epochs: int = 3, ckpt_path: str | None = None, **kw) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=any(
                             isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks),
                         callbacks=callbacks, **kw)
    trainer.fit(module, loader(), ckpt_path=ckpt_path)
    return trainer


def reference_lrs(step_losses: list[float], **length) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    sched = MLRSNetScheduler(opt, "ours", num_classes=4, **length)
    out = []
    for loss in step_losses:
        sched.step(loss)
        out.append(sched.get_last_lr()[0])
    return out


@pytest.mark.parametrize("accumulate", [1, 2])
def test_each_step_gets_the_lr_of_its_own_mean_loss(accumulate: int) -> None:
    module, callback = Module(), MLRSNetCallback("ours", num_classes=4)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module="mlrsnet")  # no wrong-order or other warning of ours
        fit(module, [callback], accumulate_grad_batches=accumulate)
    steps = 3 * BATCHES // accumulate
    per_step = [sum(module.losses[k * accumulate:(k + 1) * accumulate]) / accumulate for k in range(steps)]
    sched = callback.scheduler
    assert sched.stage_starts == (0, steps // 3, 2 * steps // 3)  # 3 epochs: the official epoch rule
    assert len(module.lrs) == steps
    assert module.lrs == pytest.approx(reference_lrs(per_step, epochs=3, steps_per_epoch=steps // 3), rel=1e-6)
    assert sched.last_epoch == steps - 1 and sched.withdrawn_steps == 0


def test_a_fit_resumed_from_a_checkpoint_continues_the_schedule(tmp_path: Path) -> None:
    straight = Module()
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1)
    fit(straight, [MLRSNetCallback("ours", num_classes=4), saver], epochs=4)
    ckpt = tmp_path / f"epoch=1-step={2 * BATCHES}.ckpt"
    saved = torch.load(ckpt, weights_only=True)["callbacks"]
    assert any("last_epoch" in state for state in saved.values())  # the scheduler's state is in it
    resumed, callback = Module(), MLRSNetCallback("ours", num_classes=4)
    fit(resumed, [callback], epochs=4, ckpt_path=str(ckpt))
    assert resumed.lrs == straight.lrs[2 * BATCHES:]
    assert callback.scheduler.last_epoch == 4 * BATCHES - 1


def test_the_textbook_configure_optimizers_setup_refuses_with_the_fix() -> None:
    with pytest.raises(TypeError) as refused:
        fit(Module({"interval": "step"}), [])
    assert str(refused.value) == NO_LOSS_ERROR and "lightning.MLRSNetCallback" in NO_LOSS_ERROR


def test_stepping_it_as_a_plateau_scheduler_after_the_optimizer_is_warned_about() -> None:
    with pytest.warns(UserWarning, match="first called after optimizer.step"):
        fit(Module({"interval": "step", "monitor": "train_loss", "reduce_on_plateau": True}), [], epochs=1)
