"""Hand-designed schedules: the LR they give at each point of a run."""

from __future__ import annotations

import math

import pytest
import torch
from mlrsnet.baselines.cosine import Cosine
from mlrsnet.baselines.exponential import Exponential
from mlrsnet.baselines.fixed import Fixed
from mlrsnet.baselines.multistep import MultiStep, MultiStepVal
from mlrsnet.baselines.sgdr import SGDR
from support.least_squares import start_stub_run

from mlrsnet.harness.contract import Method, OptimSettings, StepInfo


def bound(method: Method, epochs: int = 200, steps_per_epoch: int = 10, base_lr: float = 0.1) -> Method:
    start_stub_run(method, torch.nn.Linear(2, 1), OptimSettings(), steps_per_epoch=steps_per_epoch,
                   epochs=epochs, num_outputs=10, base_lr=base_lr)
    return method


def at(method: Method, epoch: int, index: int = 0) -> float:
    spe = method.run.horizon.steps_per_epoch
    return method.lr(StepInfo(step=epoch * spe + index, epoch=epoch, index_in_epoch=index,
                              loss=torch.tensor(1.0)))


def test_multistep_decays_at_epochs_60_120_180_of_200_as_in_the_paper() -> None:
    m = bound(MultiStep(lr=0.2, decay=0.1))
    assert [at(m, e) for e in (0, 59, 60, 119, 120, 180, 199)] == pytest.approx(
        [0.2, 0.2, 0.02, 0.02, 0.002, 0.0002, 0.0002])


def test_multistep_milestones_scale_with_the_profile_epochs() -> None:
    m = bound(MultiStep(lr=1.0, decay=0.5), epochs=10)
    assert [at(m, e) for e in range(10)] == pytest.approx([1, 1, 1, .5, .5, .5, .25, .25, .25, .125])


def test_multistep_val_decays_after_an_epoch_without_a_new_best_validation_loss() -> None:
    m = bound(MultiStepVal(lr=20.0, decay=0.25), base_lr=20.0)
    for epoch, val in enumerate([5.0, 4.0, 4.5, 3.9, 3.95, 3.96]):
        m.end_epoch(epoch, {"val/loss": val})
    assert at(m, 6) == pytest.approx(20.0 * 0.25 ** 3)
    clone = bound(MultiStepVal(lr=20.0, decay=0.25), base_lr=20.0)
    clone.load_state_dict(m.state_dict())
    assert at(clone, 6) == at(m, 6)


def test_lr_none_means_the_task_base_lr() -> None:
    assert at(bound(Fixed(), base_lr=20.0), 3) == 20.0


def test_cosine_goes_from_lr_to_the_floor_over_the_run() -> None:
    m = bound(Cosine(lr=0.1, min_ratio=0.01), epochs=10, steps_per_epoch=10)
    assert at(m, 0) == pytest.approx(0.1)
    assert at(m, 5) == pytest.approx(0.1 * (0.01 + 0.99 * 0.5))
    assert at(m, 9, 9) == pytest.approx(0.1 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.99))))


def test_exponential_multiplies_by_gamma_each_epoch() -> None:
    m = bound(Exponential(lr=1.0, decay=0.9))
    assert at(m, 3) == pytest.approx(0.9 ** 3)


def test_sgdr_restarts_at_the_end_of_each_cycle_and_cycles_grow() -> None:
    m = bound(SGDR(lr=1.0, t0=0.1, t_mult=2.0), epochs=10, steps_per_epoch=10)  # cycles: 10, 20, 40 steps
    lrs = [m.lr(StepInfo(step=s, epoch=s // 10, index_in_epoch=s % 10, loss=torch.tensor(1.0)))
           for s in range(100)]
    restarts = [s for s in range(1, 100) if lrs[s] > lrs[s - 1]]
    assert restarts == [10, 30, 70]
    assert lrs[0] == lrs[10] == lrs[30] == 1.0


def test_search_spaces_follow_the_paper_ranges_per_task_kind() -> None:
    assert MultiStep.space("image") == {"lr": ("loguniform", 1e-2, 5e-1), "decay": ("loguniform", 1e-2, 5e-1)}
    assert MultiStep.space("text")["lr"] == ("loguniform", 1e-2, 20.0)
