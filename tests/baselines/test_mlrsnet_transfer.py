"""Method ``mlrsnet-transfer`` (and ``mlrsnet`` in the loop): the three-stage rule through the
method contract on a hand-built run, resume, and real smoke runs on every registered task."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mlrsnet.baselines.mlrsnet_transfer import MLRSNetTransfer
from support.least_squares import start_stub_run
from torch import nn

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings, RunContext, StepInfo
from mlrsnet.harness.registry import get_method
from mlrsnet.snet.gamma import TaskScale


def toy_run(method: MLRSNetTransfer, *, steps_per_epoch: int = 2, epochs: int = 6,
            kind: str = "image") -> RunContext:
    return start_stub_run(method, nn.Linear(3, 2), OptimSettings(), steps_per_epoch=steps_per_epoch,
                          epochs=epochs, task_name="toy", kind=kind,
                          num_outputs=10 if kind == "image" else 10_000)


def drive(method: MLRSNetTransfer, run: RunContext, losses: list[float], start: int = 0) -> list[float]:
    lrs = []
    for s, loss in enumerate(losses, start=start):
        info = StepInfo(step=s, epoch=s // run.horizon.steps_per_epoch, index_in_epoch=s % run.horizon.steps_per_epoch,
                        loss=torch.tensor(loss))
        lrs.append(method.lr(info))
        method.after_step(info)
        if (s + 1) % run.horizon.steps_per_epoch == 0:
            method.end_epoch(s // run.horizon.steps_per_epoch, {})
    return lrs


LOSSES = [2.30, 2.25, 2.0, 1.8, 1.6, 1.5, 1.3, 1.2, 1.0, 0.9, 0.8, 0.75]


def test_checkpoints_1_100_200_each_cover_a_third_of_the_epochs(official_ckpts: Path) -> None:
    method = MLRSNetTransfer(checkpoint_dir=str(official_ckpts), loss_window=1)
    run = toy_run(method)
    used, gammas = [], []
    for s, loss in enumerate(LOSSES):
        drive(method, run, [loss], start=s)
        used.append(method.scheduler.current_checkpoint)
        gammas.append(method.scheduler.gamma)
    assert used == [1] * 4 + [100] * 4 + [200] * 4  # 6 epochs of 2 steps: switch at epochs 2 and 4
    scale = TaskScale("image", 10)
    assert [gammas[0], gammas[4], gammas[8]] == pytest.approx(
        [scale.gamma(2.30), scale.gamma(1.6), scale.gamma(1.0)])
    info = method.extra_info()
    # the official set runs, by default, with the released meta-test script's cell
    assert info["mlrsnet_cell"] == "meta-test-script" and info["mlrsnet_stage_epochs"] == [1, 100, 200]
    assert info["mlrsnet_checkpoints"] == "official" and info["mlrsnet_parameters"] == 11_776


def test_single_checkpoint_mode_keeps_one_network_and_the_initial_gamma(official_ckpts: Path) -> None:
    method = MLRSNetTransfer(checkpoint_dir=str(official_ckpts), single=200)
    run = toy_run(method)
    drive(method, run, LOSSES)
    assert method.scheduler.stage_epochs == (200,)
    assert method.scheduler.gamma == pytest.approx(TaskScale("image", 10).gamma(2.30))


def test_language_models_are_scheduled_through_the_same_method(official_ckpts: Path) -> None:
    method = MLRSNetTransfer(checkpoint_dir=str(official_ckpts))
    run = toy_run(method, kind="text")
    lrs = drive(method, run, [9.2, 8.0, 7.0, 6.5, 6.0, 5.8])
    assert method.scheduler.scale == TaskScale("text", 10_000)
    assert all(lr > 0 for lr in lrs)


def test_a_resumed_transfer_run_continues_the_same_schedule(official_ckpts: Path) -> None:
    straight = MLRSNetTransfer(checkpoint_dir=str(official_ckpts))
    expected = drive(straight, toy_run(straight), LOSSES)
    first = MLRSNetTransfer(checkpoint_dir=str(official_ckpts))
    got = drive(first, toy_run(first), LOSSES[:5])
    saved = copy.deepcopy(first.state_dict())
    resumed = MLRSNetTransfer(checkpoint_dir=str(official_ckpts))
    run = toy_run(resumed)
    resumed.load_state_dict(saved)
    got += drive(resumed, run, LOSSES[5:], start=5)
    assert got == expected


def test_an_unknown_cell_or_hparam_is_a_user_error() -> None:
    with pytest.raises(UserError):
        MLRSNetTransfer(gate_convention="lstm")
    with pytest.raises(UserError):
        MLRSNetTransfer(stages=3)


def test_the_method_is_discovered_under_its_name() -> None:
    assert get_method("mlrsnet-transfer") is MLRSNetTransfer


# ---------------------------------------------------------------------------------------
# real smoke runs through the one training loop
# ---------------------------------------------------------------------------------------

def _train_or_skip(cell, **kwargs):  # noqa: ANN001, ANN202
    from mlrsnet.harness.loop import train
    from mlrsnet.paper.data.locate import MissingDataError

    try:
        return train(cell, **kwargs)
    except MissingDataError as exc:  # only a dataset this machine lacks (SVHN has no subset)
        pytest.skip(f"{cell.task}: {exc}")


#: One image and one text task; every method on every task is run by
#: tests/test_every_method_on_every_task.py.
SMOKE_TASKS = ["resnet18-cifar10", "lstm2-ptb"]


@pytest.mark.parametrize("task", SMOKE_TASKS)
def test_transfer_runs_on_smoke_profiles_with_positive_lrs(task: str, data_dir: Path, official_ckpts: Path) -> None:
    from mlrsnet.harness.experiment import Cell

    result = _train_or_skip(Cell(task=task, profile="smoke", method="mlrsnet-transfer",
                                 hparams={"checkpoint_dir": str(official_ckpts)}, seed=0))
    assert result.status == "finished"
    assert all(lr > 0 for lr in result.steps["lr"])
    info = result.method_info
    assert info["mlrsnet_cell"] == "meta-test-script" and info["mlrsnet_gamma_loss"] == "train-pass"
    # gamma came from a full eval-mode pass at each stage start (smoke: 2 epochs, one stage)
    (step, loss), = info["mlrsnet_gamma_reference"]
    assert step == 0 and info["mlrsnet_train_pass_s"] > 0
    assert info["mlrsnet_gamma"] == pytest.approx(TaskScale(
        "image" if task.startswith("resnet") else "text", 10 if task.startswith("resnet") else 10_000).gamma(loss))


def test_each_set_runs_with_its_own_gate_convention_unless_told(official_ckpts: Path) -> None:
    conventions = {}
    for checkpoints, cell in [("official", None), ("ours", None), ("official", "meta-train"),
                              ("ours", "meta-test-script")]:
        method = MLRSNetTransfer(checkpoints=checkpoints, checkpoint_dir=str(official_ckpts),
                                 gate_convention=cell)
        toy_run(method)
        conventions[(checkpoints, cell)] = method.extra_info()["mlrsnet_cell"]
    assert conventions == {("official", None): "meta-test-script", ("ours", None): "meta-train",
                           ("official", "meta-train"): "meta-train",
                           ("ours", "meta-test-script"): "meta-test-script"}


@pytest.mark.parametrize("task", SMOKE_TASKS)
def test_meta_training_writes_a_checkpoint_per_epoch_and_a_manifest(task: str, data_dir: Path, tmp_path: Path) -> None:
    from mlrsnet.harness.experiment import Cell

    result = _train_or_skip(Cell(task=task, profile="smoke", method="mlrsnet", seed=0),
                            artifact_dir=tmp_path)
    assert result.status == "finished"
    assert result.method_info["meta_updates"] > 0
    assert (tmp_path / "manifest.json").exists()
    assert len(list(tmp_path.glob("mlr_snet_*.pth"))) == len({r["epoch"] for r in result.epochs}) == 2


def test_a_network_meta_trained_on_images_schedules_a_language_model(data_dir: Path, tmp_path: Path) -> None:
    from mlrsnet.harness.experiment import Cell

    meta = _train_or_skip(Cell(task="resnet18-cifar10", profile="smoke", method="mlrsnet", seed=0),
                          artifact_dir=tmp_path / "ckpts")
    assert meta.status == "finished"
    result = _train_or_skip(Cell(task="lstm3-ptb", profile="smoke", method="mlrsnet-transfer",
                                 hparams={"checkpoints": str(tmp_path / "ckpts")}, seed=0))
    assert result.status == "finished"
    assert result.method_info["mlrsnet_checkpoints"] == str(tmp_path / "ckpts")


def test_our_packaged_set_transfers_to_ptb(data_dir: Path) -> None:
    from mlrsnet.harness.experiment import Cell

    result = _train_or_skip(Cell(task="lstm2-ptb", profile="smoke", method="mlrsnet-transfer",
                                 hparams={"checkpoints": "ours"}, seed=0))
    assert result.status == "finished"
    assert result.method_info["mlrsnet_checkpoints"] == "ours-mini"
