"""MLRSNetScheduler: a torch LRScheduler that sets gamma * MLR-SNet(loss) on the optimiser,
keeping each param group's LR ratio; the three-stage rule, carried state, torch-style
state_dict (refusing another task's), the call-order warning, a hand-over from a torch
warm-up, and the README example.

Reference values come from the official forward trace (``forward_trace_ckpt1.json``: the
authors' MLRSNet on checkpoint 1) and from the gamma formula as the official meta-test
script writes it (:func:`official_gamma`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlrsnet.errors import UserError
from mlrsnet.snet.checkpoint_sets import resolve_checkpoints
from mlrsnet.snet.gamma import TaskScale
from mlrsnet.snet.net import CELL_META_TEST_SCRIPT, load_mlrsnet
from mlrsnet.snet.scheduler import MLRSNetScheduler, stage_starts

REPO = Path(__file__).resolve().parents[2]
TRACE = "forward_trace_ckpt1.json"


def official_gamma(train_loss: float, num_classes: int) -> float:
    """``gamma`` exactly as xjtushujun/MLR-SNet meta-test/meta_test.py computes it."""
    return abs((train_loss ** 0.5 * math.log(train_loss * num_classes) / num_classes ** 0.25) / 4)


def trace_of(ckpts_dir: Path) -> dict:
    return json.loads((ckpts_dir / TRACE).read_text())


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
    trace = trace_of(official_ckpts)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 5.0}], lr=1.0)
    sched = MLRSNetScheduler(opt, official(official_ckpts), num_classes=10, single=1, cell=cell,
                             initial_loss=2.3)
    gamma = official_gamma(2.3, 10)
    for loss, expected in zip(trace["losses"][:50], trace[key][:50], strict=True):
        sched.step(torch.tensor(loss))
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
        first, second = sched.get_last_lr()
        assert first == pytest.approx(gamma * expected, abs=1e-6)
        assert second == pytest.approx(5.0 * first, rel=1e-12)  # built with 5.0 vs 1.0
    assert sched.last_epoch == 49


def test_three_stages_switch_checkpoints_and_recompute_gamma_from_recent_losses(official_ckpts: Path) -> None:
    sched = MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", num_classes=10, epochs=3,
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
    sched = MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", num_classes=10, total_steps=6)
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
    a = MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", num_classes=10, total_steps=30)
    b = MLRSNetScheduler(sgd(), official(official_ckpts), num_classes=10, total_steps=30,
                         cell=CELL_META_TEST_SCRIPT)
    with pytest.raises(ValueError, match="cell"):
        b.load_state_dict(a.state_dict())


def test_language_models_feed_loss_over_log_v_and_scale_by_perplexity(official_ckpts: Path) -> None:
    sched = MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", vocab_size=10_000, single=200)
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
        MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", total_steps=10)


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


# ---------------------------------------------------------------------------------------
# a torch LRScheduler: param groups, get_last_lr, state_dict, call order, other schedulers
# ---------------------------------------------------------------------------------------

def two_groups(lr0: float = 0.1, lr1: float = 0.01) -> torch.optim.SGD:
    model = nn.Linear(2, 2)
    return torch.optim.SGD([{"params": [model.weight], "lr": lr0}, {"params": [model.bias], "lr": lr1}])


def test_it_is_a_torch_lr_scheduler_that_takes_no_step_when_built(official_ckpts: Path) -> None:
    opt = two_groups()
    sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=1)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    assert sched.last_epoch == -1 and sched.current_checkpoint is None
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]  # unlike torch's base class: no step yet
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.01]  # stored as torch schedulers do
    assert sched.get_last_lr() == [0.1, 0.01]
    with pytest.raises(TypeError, match="step\\(loss\\)"):
        sched.get_lr()


def test_two_groups_built_with_0_1_and_0_01_get_lrs_in_ratio_10(official_ckpts: Path) -> None:
    trace = trace_of(official_ckpts)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 0.01},
                           {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.0}])
    sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=1, initial_loss=2.3)
    for t in range(20):
        sched.step(trace["losses"][t])
        mlrsnet_lr = official_gamma(2.3, 10) * trace["output_meta_train_cell"][t]
        lrs = [g["lr"] for g in opt.param_groups]
        assert lrs[0] == pytest.approx(mlrsnet_lr, abs=1e-6)  # the first group: the MLR-SNet LR itself
        assert lrs[0] / lrs[1] == pytest.approx(10.0, rel=1e-12)
        assert lrs[2] == 0.0  # built with LR 0 beside a positive first group: stays frozen
        assert sched.get_last_lr() == lrs
    assert sched.lr_ratios == pytest.approx([1.0, 0.1, 0.0])


def test_a_group_added_later_gets_its_ratio_from_its_lr_then(official_ckpts: Path) -> None:
    opt = two_groups(0.1, 0.01)
    sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=1)
    sched.step(2.3)
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": 0.05})
    sched.step(2.2)
    first, second, third = sched.get_last_lr()
    assert first / second == pytest.approx(10.0, rel=1e-12)
    assert third / first == pytest.approx(0.5, rel=1e-12)


def test_groups_that_start_at_lr_0_all_get_the_mlrsnet_lr(official_ckpts: Path) -> None:
    trace = trace_of(official_ckpts)
    opt = two_groups(0.0, 0.0)
    sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=1, initial_loss=2.3)
    sched.step(trace["losses"][0])
    expected = official_gamma(2.3, 10) * trace["output_meta_train_cell"][0]
    assert sched.get_last_lr() == pytest.approx([expected, expected], abs=1e-6)
    assert sched.get_last_lr()[0] == sched.get_last_lr()[1]


def test_a_first_group_at_0_beside_a_positive_one_is_warned_about_and_ratios_are_1(official_ckpts: Path) -> None:
    opt = two_groups(0.0, 0.01)
    with pytest.warns(UserWarning, match="ratios are undefined"):
        sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=1)
    sched.step(2.3)
    first, second = sched.get_last_lr()
    assert first == second > 0


def test_get_last_lr_is_a_copy_of_the_lrs_just_set(official_ckpts: Path) -> None:
    opt = two_groups()
    sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=1)
    sched.step(2.3)
    last = sched.get_last_lr()
    last[0] = -1.0
    assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups] != last


def test_a_state_dict_round_trip_resumes_the_same_lr_sequence_in_every_group(official_ckpts: Path) -> None:
    losses = [2.3 * math.exp(-0.04 * t) for t in range(24)]
    ckpts = official(official_ckpts)

    def make() -> tuple[torch.optim.SGD, MLRSNetScheduler]:
        opt = two_groups()
        return opt, MLRSNetScheduler(opt, ckpts, num_classes=10, total_steps=24, loss_window=3)

    opt, straight = make()
    expected = []
    for loss in losses:
        straight.step(loss)
        expected.append(straight.get_last_lr())
    opt, first = make()
    for loss in losses[:10]:
        first.step(loss)
        opt.step()
    saved_opt, saved = opt.state_dict(), first.state_dict()
    opt, resumed = make()  # torch's order: build the scheduler, then load the optimizer, then it
    opt.load_state_dict(saved_opt)
    resumed.load_state_dict(saved)
    assert resumed.last_epoch == 9 and resumed.get_last_lr() == expected[9]
    got = []
    for loss in losses[10:]:
        resumed.step(loss)
        got.append(resumed.get_last_lr())
    assert got == expected[10:]
    assert resumed.current_checkpoint == 200


@pytest.mark.parametrize("other,mine,names", [
    ({"num_classes": 10}, {"vocab_size": 10_000},
     ["image classification with 10 classes", "language modelling with a 10000-token vocabulary"]),
    ({"num_classes": 10}, {"num_classes": 100},
     ["image classification with 10 classes", "image classification with 100 classes"]),
])
def test_a_state_from_another_task_kind_is_refused_naming_both(
        official_ckpts: Path, other: dict, mine: dict, names: list[str]) -> None:
    a = MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", total_steps=30, **other)
    a.step(2.3)
    b = MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", total_steps=30, **mine)
    with pytest.raises(ValueError) as refused:
        b.load_state_dict(a.state_dict())
    assert f"state is for {names[0]}, this scheduler for {names[1]}" in str(refused.value)
    assert b.last_epoch == -1  # nothing was loaded


def _train(sched_first: bool, official_ckpts: Path, iterations: int = 5) -> list[warnings.WarningMessage]:
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # no de-duplication: "once" must be the scheduler's doing
        sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=200)
        for _ in range(iterations):
            loss = F.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            if sched_first:
                sched.step(loss)
                opt.step()
            else:
                opt.step()
                sched.step(loss)
    return [w for w in seen if issubclass(w.category, UserWarning)]


def test_stepping_after_optimizer_step_is_warned_about_once(official_ckpts: Path) -> None:
    seen = _train(sched_first=False, official_ckpts=official_ckpts)
    assert len(seen) == 1
    assert "first called after optimizer.step()" in str(seen[0].message)
    assert "lags one step" in str(seen[0].message)
    assert seen[0].filename == __file__  # points at the caller's line


def test_the_right_order_warns_nothing(official_ckpts: Path) -> None:
    assert _train(sched_first=True, official_ckpts=official_ckpts) == []


def test_optimizer_steps_before_the_scheduler_was_built_do_not_count(official_ckpts: Path) -> None:
    opt = two_groups()
    opt.step()  # e.g. a warm-up that ran before MLR-SNet took over
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=200)
        sched.step(2.3)
        opt.step()


def test_a_linear_lr_warm_up_hands_over_to_mlrsnet_keeping_the_group_ratio(official_ckpts: Path) -> None:
    """The composition this scheduler supports: in sequence.  torch's LinearLR warms up the
    first 2 steps (in torch's order, stepped after optimizer.step()); MLR-SNet is built when
    it takes over and takes the ratio from ``initial_lr``, not from the warm-up's LRs."""
    trace = trace_of(official_ckpts)
    opt = two_groups(0.1, 0.01)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=2)
    seen_lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            seen_lrs += [g["lr"] for g in opt.param_groups]
            opt.step()
            warm.step()
        assert seen_lrs == pytest.approx([0.025, 0.0025, 0.0625, 0.00625])  # 0.25 then 0.625 of 0.1 / 0.01
        sched = MLRSNetScheduler(opt, official(official_ckpts), cell="meta-train", num_classes=10, single=1, initial_loss=2.3)
        for t in range(6):
            sched.step(trace["losses"][t])
            opt.step()
            first, second = sched.get_last_lr()
            assert first == pytest.approx(official_gamma(2.3, 10) * trace["output_meta_train_cell"][t], abs=1e-6)
            assert first / second == pytest.approx(10.0, rel=1e-12)


def test_it_refuses_to_be_chained_by_torch_schedulers_that_step_without_a_loss(official_ckpts: Path) -> None:
    sched = MLRSNetScheduler(sgd(), official(official_ckpts), cell="meta-train", num_classes=10, single=1)
    with pytest.raises(TypeError):
        sched.step()  # type: ignore[call-arg]  # what ChainedScheduler / SequentialLR would call


def test_the_gate_convention_defaults_to_the_sets_own(official_ckpts: Path) -> None:
    # the official files run with the released meta-test script's cell: its recorded outputs
    trace = json.loads((official_ckpts / "forward_trace_ckpt1.json").read_text())
    opt = sgd()
    default = MLRSNetScheduler(opt, official(official_ckpts), num_classes=10, single=1, initial_loss=2.3)
    assert default.cell == "meta-test-script"
    for t, loss in enumerate(trace["losses"][:5]):
        default.step(loss)
        assert opt.param_groups[0]["lr"] == pytest.approx(
            official_gamma(2.3, 10) * trace["output_meta_test_cell"][t], abs=1e-6)
    # our packaged set records the meta-training cell it was trained with
    assert MLRSNetScheduler(sgd(), "ours", num_classes=10, total_steps=9).cell == "meta-train"


def test_a_reference_loss_function_gives_gamma_at_every_stage_start(official_ckpts: Path) -> None:
    calls = []

    def full_pass() -> float:
        calls.append(len(calls))
        return [2.0, 1.5, 1.0][len(calls) - 1]

    sched = MLRSNetScheduler(sgd(), official(official_ckpts), num_classes=10, total_steps=9,
                             reference_loss=full_pass)
    gammas = []
    for _ in range(9):
        sched.step(3.0)  # the mini-batch loss never enters gamma
        gammas.append(sched.gamma)
    scale = TaskScale("image", 10)
    assert gammas == pytest.approx([scale.gamma(2.0)] * 3 + [scale.gamma(1.5)] * 3 + [scale.gamma(1.0)] * 3)
    assert [step for step, _, _ in sched.reference_calls] == [0, 3, 6]
