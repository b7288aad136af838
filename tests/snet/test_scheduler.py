"""MLRSNetScheduler: gamma * MLR-SNet(loss) on the optimiser, the three-stage rule, carried
state, torch-style state_dict, and the README example."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mlrsnet.errors import UserError
from mlrsnet.snet.checkpoint_sets import resolve_checkpoints
from mlrsnet.snet.gamma import TaskScale
from mlrsnet.snet.net import CELL_META_TEST_SCRIPT, load_mlrsnet
from mlrsnet.snet.scheduler import MLRSNetScheduler, stage_starts

REPO = Path(__file__).resolve().parents[2]


def sgd() -> torch.optim.SGD:
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.0)


def official(ckpts_dir: Path):  # noqa: ANN201
    return resolve_checkpoints("official", checkpoint_dir=ckpts_dir)


def test_stage_starts_follow_the_official_epoch_rule() -> None:
    assert stage_starts(epochs=200, steps_per_epoch=383) == (0, 66 * 383, 132 * 383)
    assert stage_starts(epochs=6, steps_per_epoch=32) == (0, 64, 128)
    assert stage_starts(epochs=2, steps_per_epoch=4) == (0, 0, 0)  # < 3 epochs: last checkpoint only
    assert stage_starts(total_steps=10) == (0, 3, 6)
    with pytest.raises(UserError, match="length of training"):
        stage_starts()


@pytest.mark.parametrize("cell,key", [("meta-train", "output_meta_train_cell"),
                                      (CELL_META_TEST_SCRIPT, "output_meta_test_cell")])
def test_the_lr_is_gamma_times_the_official_output_and_lands_in_every_param_group(
        official_ckpts: Path, cell: str, key: str) -> None:
    trace = json.loads((official_ckpts / "forward_trace_ckpt1.json").read_text())
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 5.0}], lr=1.0)
    sched = MLRSNetScheduler(opt, official(official_ckpts), num_classes=10, single=1, cell=cell,
                             initial_loss=2.3)
    gamma = TaskScale("image", 10).gamma(2.3)
    for loss, expected in zip(trace["losses"][:50], trace[key][:50], strict=True):
        sched.step(torch.tensor(loss))
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
        assert sched.get_last_lr()[0] == pytest.approx(gamma * expected, abs=1e-6)
    assert sched.last_epoch == 49


def test_three_stages_switch_checkpoints_and_recompute_gamma_from_recent_losses(official_ckpts: Path) -> None:
    sched = MLRSNetScheduler(sgd(), official(official_ckpts), num_classes=10, epochs=3,
                             steps_per_epoch=4, loss_window=2)
    losses = [2.3, 2.2, 2.0, 1.9, 1.7, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7]
    scale = TaskScale("image", 10)
    used, gammas = [], []
    for loss in losses:
        sched.step(loss)
        used.append(sched.current_checkpoint)
        gammas.append(sched.gamma)
    assert used == [1] * 4 + [100] * 4 + [200] * 4
    assert gammas[0] == pytest.approx(scale.gamma(2.3))
    assert gammas[4] == pytest.approx(scale.gamma((1.9 + 1.7) / 2))  # mean of the last 2 losses
    assert gammas[8] == pytest.approx(scale.gamma((1.2 + 1.0) / 2))
    assert len(set(gammas[:4])) == len(set(gammas[4:8])) == 1


def test_the_lstm_state_is_carried_across_a_checkpoint_switch(official_ckpts: Path) -> None:
    sched = MLRSNetScheduler(sgd(), official(official_ckpts), num_classes=10, total_steps=6)
    for loss in (2.3, 2.1):
        sched.step(loss)
    carried = sched.state_dict()
    sched.step(1.9)  # step 2 = first step of the 100 stage
    net100 = load_mlrsnet(official_ckpts / "mlr_snet_100.pth")
    with torch.no_grad():
        from mlrsnet.snet.net import LSTMState
        with_state, _ = net100(1.9, LSTMState(carried["h"], carried["c"]))
        fresh, _ = net100(1.9, net100.initial_state())
    assert sched.get_last_lr()[0] == pytest.approx(sched.gamma * float(with_state), rel=1e-6)
    assert abs(float(with_state) - float(fresh)) > 1e-4


def test_a_restored_scheduler_continues_the_same_schedule(official_ckpts: Path) -> None:
    losses = [2.3 * math.exp(-0.05 * t) for t in range(30)]
    ckpts = official(official_ckpts)
    straight = MLRSNetScheduler(sgd(), ckpts, num_classes=10, total_steps=30)
    expected = []
    for loss in losses:
        straight.step(loss)
        expected.append(straight.get_last_lr()[0])
    first = MLRSNetScheduler(sgd(), ckpts, num_classes=10, total_steps=30)
    for loss in losses[:13]:
        first.step(loss)
    resumed = MLRSNetScheduler(sgd(), ckpts, num_classes=10, total_steps=30)
    resumed.load_state_dict(first.state_dict())
    got = []
    for loss in losses[13:]:
        resumed.step(loss)
        got.append(resumed.get_last_lr()[0])
    assert got == expected[13:]


def test_a_state_from_another_configuration_is_refused(official_ckpts: Path) -> None:
    a = MLRSNetScheduler(sgd(), official(official_ckpts), num_classes=10, total_steps=30)
    b = MLRSNetScheduler(sgd(), official(official_ckpts), num_classes=10, total_steps=30,
                         cell=CELL_META_TEST_SCRIPT)
    with pytest.raises(ValueError, match="cell"):
        b.load_state_dict(a.state_dict())


def test_language_models_feed_loss_over_log_v_and_scale_by_perplexity(official_ckpts: Path) -> None:
    sched = MLRSNetScheduler(sgd(), official(official_ckpts), vocab_size=10_000, single=200)
    loss = math.log(10_000) * 0.9
    sched.step(loss)
    net = load_mlrsnet(official_ckpts / "mlr_snet_200.pth")
    with torch.no_grad():
        out, _ = net(0.9, net.initial_state())
    scale = TaskScale("text", 10_000)
    assert sched.gamma == pytest.approx(scale.gamma(loss))
    assert sched.get_last_lr()[0] == pytest.approx(scale.gamma(loss) * float(out), rel=1e-6)


def test_the_task_must_be_given_as_classes_or_vocabulary(official_ckpts: Path) -> None:
    with pytest.raises(UserError, match="exactly one"):
        MLRSNetScheduler(sgd(), official(official_ckpts), total_steps=10)


def test_the_readme_example_runs_and_trains(tmp_path: Path) -> None:
    example = REPO / "docs" / "scheduler_example.py"
    done = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                            "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 6
    losses = [float(ln.split("train loss ")[1].split()[0]) for ln in lines]
    lrs = [float(ln.split("lr ")[1]) for ln in lines]
    assert losses[-1] < 0.8 * losses[0]
    assert all(lr > 0 for lr in lrs)
