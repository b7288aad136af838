"""HD (baselines/hd.py): the LR and weights of the first steps equal the paper's equations.

The problem is linear least squares with ``nn.Linear(2, 1)`` in float64, small enough that
the reference below recomputes every step with numpy from the update equations alone.
The method is driven through the contract in the loop's call order.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.least_squares import (
    ContractDriver,
    flat,
    initial_theta,
    interrupt_and_resume,
    least_squares_batches,
    lsq_gradient,
    make_model,
)

from baselines.hd import HypergradientDescent
from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings
from mlrsnet.harness.registry import get_method

STEPS = 6


def reference_hd(batches, alpha0, beta, weight_decay, momentum, nesterov, clamp=False):
    """Baydin et al.: alpha_t = alpha_{t-1} + beta g_t.u_{t-1}; w <- w - alpha_t u_t."""
    theta, alpha = initial_theta(), alpha0
    previous_direction, buffer = np.zeros(3), None
    lrs, thetas = [], []
    for batch in batches:
        g = lsq_gradient(theta, batch) + weight_decay * theta
        alpha = alpha + beta * g @ previous_direction
        if clamp:
            alpha = max(alpha, 0.0)
        if momentum == 0:
            u = g
        else:
            buffer = g.copy() if buffer is None else momentum * buffer + g
            u = g + momentum * buffer if nesterov else buffer
        theta = theta - alpha * u
        previous_direction = u
        lrs.append(alpha)
        thetas.append(theta)
    return np.array(lrs), np.array(thetas)


def run_method(hparams, optim, batches):
    model = make_model()
    driver = ContractDriver(HypergradientDescent(**hparams), model, optim, steps_per_epoch=STEPS)
    lrs, thetas = [], []
    for batch in batches:
        lrs.append(driver.step(batch))
        thetas.append(flat(model))
    return np.array(lrs), np.array(thetas)


@pytest.mark.parametrize(
    ("momentum", "nesterov"),
    [(0.0, False), (0.9, False), (0.9, True)],
    ids=["sgd-hd", "sgdm-hd", "sgdn-hd"],
)
def test_first_lrs_and_weights_follow_the_hypergradient_equations(momentum, nesterov):
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(momentum=momentum, weight_decay=1e-2, nesterov=nesterov)
    hparams = {"lr": 0.05, "hyper_lr": 0.02}
    lrs, thetas = run_method(hparams, optim, batches)
    ref_lrs, ref_thetas = reference_hd(batches, 0.05, 0.02, 1e-2, momentum, nesterov)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    # the test is only meaningful if the LR actually moved
    assert lrs[0] == 0.05 and np.ptp(lrs) > 1e-3


def test_the_first_step_leaves_the_lr_at_its_initial_value():
    lrs, _ = run_method({"lr": 0.03}, OptimSettings(), least_squares_batches(1))
    assert lrs[0] == 0.03


def test_an_overshooting_lr_is_driven_negative_and_recorded_as_it_is():
    batches = least_squares_batches(4)
    hparams = {"lr": 1.5, "hyper_lr": 0.1}
    lrs, thetas = run_method(hparams, OptimSettings(), batches)
    ref_lrs, ref_thetas = reference_hd(batches, 1.5, 0.1, 0.0, 0.0, False)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    assert lrs.min() < 0


def test_the_opt_in_clamp_keeps_the_lr_at_or_above_zero():
    batches = least_squares_batches(4)
    hparams = {"lr": 1.5, "hyper_lr": 0.1, "clamp_nonneg": True}
    lrs, thetas = run_method(hparams, OptimSettings(), batches)
    ref_lrs, ref_thetas = reference_hd(batches, 1.5, 0.1, 0.0, 0.0, False, clamp=True)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    assert lrs.min() == 0.0


def test_hparams_override_the_tasks_momentum():
    batches = least_squares_batches(STEPS)
    hparams = {"lr": 0.05, "hyper_lr": 0.02, "momentum": 0.9, "nesterov": True}
    lrs, thetas = run_method(hparams, OptimSettings(momentum=0.0), batches)
    ref_lrs, ref_thetas = reference_hd(batches, 0.05, 0.02, 0.0, 0.9, True)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)


def test_a_resumed_run_continues_exactly():
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(momentum=0.9, weight_decay=1e-2, nesterov=True)
    hparams = {"lr": 0.05, "hyper_lr": 0.02}
    straight_lrs, straight_thetas = run_method(hparams, optim, batches)

    second = interrupt_and_resume(lambda: HypergradientDescent(**hparams), optim, batches, 3,
                                  steps_per_epoch=STEPS)
    lrs = [second.step(batch) for batch in batches[3:]]
    np.testing.assert_array_equal(lrs, straight_lrs[3:])
    np.testing.assert_array_equal(flat(second.model), straight_thetas[-1])


def test_hd_is_selectable_by_name_and_rejects_unknown_settings():
    assert get_method("hd") is HypergradientDescent
    with pytest.raises(UserError):
        HypergradientDescent(beta=0.1)
    with pytest.raises(UserError):
        HypergradientDescent(hyper_lr=-1.0)


def test_defaults_are_the_papers_sgd_settings():
    assert HypergradientDescent.defaults["lr"] == 1e-3
    assert HypergradientDescent.defaults["hyper_lr"] == 1e-3
    assert HypergradientDescent.defaults["clamp_nonneg"] is False


# -- in the real training loop (every task: tests/test_every_method_on_every_task.py) ------

@pytest.mark.parametrize("task", ["resnet18-cifar10", "lstm2-ptb"])
def test_in_the_training_loop_the_first_lr_is_the_initial_lr(task, data_dir):
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    result = train(Cell(task, "smoke", "hd", overrides={"epochs": 1}))
    assert result.status == "finished"
    assert result.steps["lr"][0] == HypergradientDescent.defaults["lr"]
