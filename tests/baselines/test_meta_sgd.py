"""Meta-SGD (baselines/meta_sgd.py): one LR per step, trained by MLR-SNet's look-ahead
machinery; its parameter count grows with the number of steps.

Toy run: a two-layer MLP on fixed synthetic batches in float64 (arithmetic, not a dataset),
driven through the loop's own set-up and step functions (``mlrsnet.harness.step``).
"""

from __future__ import annotations

import copy
import itertools
import math
import os

import pytest
import torch
import torch.nn.functional as F
from mlrsnet.baselines._lookahead import LookaheadMetaMethod, sgd_directions
from mlrsnet.baselines.meta_sgd import MetaSGD
from support.least_squares import start_stub_run
from torch import Tensor, nn
from torch.func import functional_call

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings, RunContext, StepInfo
from mlrsnet.harness.registry import get_method
from mlrsnet.harness.step import compute_gradients, train_step


def batches(n: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g))
            for _ in range(n)]


MOMENTUM = OptimSettings(momentum=0.9)


def toy(steps_per_epoch: int = 4, epochs: int = 3, optim: OptimSettings = MOMENTUM,
        **hparams: object) -> tuple[MetaSGD, RunContext]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    method = MetaSGD(**hparams)

    def meta_loss(params: dict[str, Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(functional_call(model, params, (batch[0],)), batch[1])

    run = start_stub_run(method, model, optim, steps_per_epoch=steps_per_epoch, epochs=epochs, task_name="toy",
                         num_outputs=3, held_out_batches=itertools.cycle(batches(2, seed=1)),
                         held_out_loss=meta_loss)
    return method, run


def step_once(method: MetaSGD, run: RunContext, s: int) -> tuple[float, Tensor]:
    """Step ``s`` of the run through the loop's ``train_step``."""
    x, y = batches(1, seed=100 + s)[0]
    loss = F.cross_entropy(run.model(x), y)
    info = StepInfo(step=s, epoch=s // run.horizon.steps_per_epoch, index_in_epoch=s % run.horizon.steps_per_epoch, loss=loss)
    result = train_step(method, info, run.params, run.optimizer, run.task.optim.clip_grad_norm)
    assert not result.diverged
    return result.lr, loss


def test_it_shares_the_lookahead_machinery_of_mlrsnet_and_is_discovered() -> None:
    assert issubclass(MetaSGD, LookaheadMetaMethod)
    assert get_method("meta-sgd") is MetaSGD


def test_the_parameter_count_grows_with_the_number_of_steps() -> None:
    short, _ = toy(steps_per_epoch=4, epochs=3)
    long, _ = toy(steps_per_epoch=4, epochs=30)
    shared, _ = toy(steps_per_epoch=4, epochs=30, interval=7)
    assert short.extra_info()["meta_parameters"] == 12
    assert long.extra_info()["meta_parameters"] == 120
    assert shared.extra_info()["meta_parameters"] == 18  # ceil(120 / 7)


def test_untrained_steps_carry_the_latest_learned_lr_forward() -> None:
    method, run = toy(t_val=3, lr=0.05)
    lrs = [step_once(method, run, s)[0] for s in range(6)]
    assert lrs[0] == lrs[1] == 0.05  # before the first meta update
    assert lrs[2] != 0.05  # in-epoch index 2: a meta step updates alpha_3 before it is used
    assert lrs[3] == lrs[4] == lrs[5] == lrs[2] != pytest.approx(0.05, abs=0)
    assert method.extra_info()["trained_alphas"] == 1


def test_the_hypergradient_of_an_alpha_matches_finite_differences() -> None:
    method, run = toy(t_val=2, lr=0.1)
    step_once(method, run, 0)
    x, y = batches(1, seed=101)[0]
    loss = F.cross_entropy(run.model(x), y)
    compute_gradients(method, loss, run.params, run.optimizer, run.task.optim.clip_grad_norm)  # a step up to lr()
    directions = {n: d.clone() for n, d in zip(run.param_names, sgd_directions(run.optimizer).values(), strict=True)}
    named = list(run.model.named_parameters())
    meta_batch = batches(2, seed=1)[0]  # the first meta update draws the first batch

    def objective(alpha: float) -> float:
        with torch.no_grad():
            params = {n: p.detach() - alpha * directions[n] for n, p in named}
            return float(run.held_out.loss(params, meta_batch))

    eps = 1e-6
    fd = (objective(0.1 + eps) - objective(0.1 - eps)) / (2 * eps)
    method.lr(StepInfo(step=1, epoch=0, index_in_epoch=1, loss=loss))
    assert method.last_hypergradient == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("positivity", ["log", "project"])
def test_each_alpha_gets_pytorchs_adam_step_with_its_own_moments(positivity: str) -> None:
    method, run = toy(steps_per_epoch=6, epochs=1, t_val=1, interval=3, lr=0.2,
                      hyper_lr=0.01, hyper_weight_decay=1e-4, positivity=positivity)
    # the reference: torch's Adam on each entry's free parameter (log alpha, or alpha itself)
    log = positivity == "log"
    reference = [nn.Parameter(torch.tensor(math.log(0.2) if log else 0.2, dtype=torch.float64)) for _ in range(2)]
    adams = [torch.optim.Adam([p], lr=0.01, weight_decay=0.0 if log else 1e-4) for p in reference]
    for s in range(6):
        k = s // 3
        if s == 3:  # alpha_2 starts from alpha_1's latest value
            with torch.no_grad():
                reference[1].copy_(reference[0])
        lr, _ = step_once(method, run, s)
        if log:  # d/drho of (meta loss + wd/2 alpha^2) at alpha = exp(rho)
            alpha = float(reference[k].detach().exp())
            grad = alpha * (method.last_hypergradient + 1e-4 * alpha)
        else:
            grad = method.last_hypergradient
        reference[k].grad = torch.tensor(grad, dtype=torch.float64)
        adams[k].step()
        expected = float(reference[k].detach().exp()) if log else float(reference[k].detach())
        assert lr == pytest.approx(expected, rel=1e-12)


class PushedDown(MetaSGD):
    """A hypergradient of +1 for every alpha (the meta loss grows with the LR): every meta
    update pushes the LR in use towards and, unconstrained, past zero."""

    def lookahead_backward(self, lr: Tensor) -> float:
        lr.reshape(()).backward(torch.tensor(1.0, dtype=lr.dtype))
        self.meta_updates += 1
        return 0.0


@pytest.mark.parametrize("positivity", ["log", "project"])
def test_the_learned_lrs_stay_positive_under_a_hypergradient_pushing_them_negative(positivity: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    method = PushedDown(t_val=1, lr=0.05, hyper_lr=0.05, positivity=positivity)
    run = start_stub_run(method, model, OptimSettings(), steps_per_epoch=40, epochs=1, task_name="toy",
                         num_outputs=3, held_out_batches=itertools.repeat(None),
                         held_out_loss=lambda params, batch: torch.zeros(()))
    lrs = [step_once(method, run, s)[0] for s in range(40)]
    # every step is a meta step (t_val=1) and each entry's first Adam step has size hyper_lr:
    # unconstrained, 0.05 - 0.05 * 2 < 0 from the second step on
    assert all(lr > 0 for lr in lrs) and lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.05 / 2
    assert float(method.alphas.min()) > 0 and method.extra_info()["min_learned_lr"] == lrs[-1]
    if positivity == "project":
        assert lrs[-1] == pytest.approx(0.05 * 1e-3, rel=1e-12)  # at the floor
    else:
        assert lrs[:2] == pytest.approx([0.05 * math.exp(-0.05), 0.05 * math.exp(-0.1)], rel=1e-6)  # Adam eps


def test_positivity_settings_are_checked_and_recorded() -> None:
    method, _ = toy()
    info = method.extra_info()
    assert info["positivity"] == "log" and info["meta_sgd_hyper_lr"] == 1e-2
    assert toy(positivity="project")[0].extra_info()["meta_sgd_hyper_lr"] == 1e-3
    with pytest.raises(UserError):
        MetaSGD(positivity="clamp")
    with pytest.raises(UserError):
        MetaSGD(min_lr_ratio=0.0)


def test_a_restored_state_continues_identically() -> None:
    a, run_a = toy(t_val=2)
    expected = [step_once(a, run_a, s)[0] for s in range(8)]
    b, run_b = toy(t_val=2)
    got = [step_once(b, run_b, s)[0] for s in range(4)]
    saved = (copy.deepcopy(b.state_dict()), copy.deepcopy(run_b.model.state_dict()),
             copy.deepcopy(run_b.optimizer.state_dict()))
    c, run_c = toy(t_val=2)
    c.load_state_dict(saved[0])
    run_c.model.load_state_dict(saved[1])
    run_c.optimizer.load_state_dict(saved[2])
    next(run_c.held_out.batches)  # two meta updates so far: the cycle is back at its start
    next(run_c.held_out.batches)
    got += [step_once(c, run_c, s)[0] for s in range(4, 8)]
    assert got == expected


@pytest.mark.parametrize("task", ["resnet18-cifar10", "lstm2-ptb"])
def test_it_runs_in_the_training_loop_on_smoke_profiles(task: str, data_dir: os.PathLike) -> None:
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    result = train(Cell(task=task, profile="smoke", method="meta-sgd", seed=0))
    assert result.status == "finished"
    steps = len(result.steps["lr"])
    assert result.method_info["meta_parameters"] == steps
    assert result.method_info["meta_updates"] > 0
    assert len(set(result.steps["lr"])) > 1
