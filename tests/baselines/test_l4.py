"""L4 (baselines/l4.py): step sizes and weights of the first steps equal the L4 equations.

Linear least squares with ``nn.Linear(2, 1)`` in float64; the numpy reference recomputes
every step from the update equations of the paper and the official code (bias-corrected
time-10 gradient average, L_min = 0.75 L_0 then min-tracking, relaxation by 1 + 1/tau
after each step).  The method is driven through the contract in the loop's call order.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlrsnet.baselines.l4 import L4Adam, L4Mom
from support.least_squares import (
    ContractDriver,
    flat,
    initial_theta,
    interrupt_and_resume,
    least_squares_batches,
    make_model,
)

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings
from mlrsnet.harness.registry import get_method

STEPS = 8


def lsq_value_and_gradient(theta: np.ndarray, batch: tuple[np.ndarray, np.ndarray]) -> tuple[float, np.ndarray]:
    x, y = batch
    a = np.hstack([x, np.ones((len(x), 1))])
    residual = a @ theta - y
    return 0.5 * float(np.mean(residual**2)), a.T @ residual / len(y)


def clip_factor(g: np.ndarray, clip: float | None) -> float:
    """The factor ``torch.nn.utils.clip_grad_norm_`` applies: min(1, clip / (|g| + 1e-6))."""
    return 1.0 if clip is None else min(1.0, clip / (np.linalg.norm(g) + 1e-6))


def reference_l4(batches, adam: bool, weight_decay: float, fraction=0.15, gamma=0.9, init=0.75,
                 tau=1000.0, epsilon=1e-12, mode="ignored", clip=None, clipped_gradient=True):
    """Rolinek & Martius: eta = alpha (L - gamma L_min) / (g_hat . v + eps); w <- w - eta v.

    ``mode``: how the weight decay enters (ignored / in g / in g and L); ``clip``: the
    loop's clip_grad_norm, whose result L4 reads when ``clipped_gradient``."""
    theta = initial_theta()
    grad_avg, sq_avg, min_loss = np.zeros(3), np.zeros(3), 0.0
    etas, thetas, min_was_replaced = [], [], []
    wd = 0.0 if mode == "ignored" else weight_decay
    for t, batch in enumerate(batches):
        value, grad = lsq_value_and_gradient(theta, batch)
        loss = value + (0.5 * wd * theta @ theta if mode == "objective" else 0.0)
        if clipped_gradient:
            grad = grad * clip_factor(grad, clip)
        g = grad + wd * theta
        min_was_replaced.append(t > 0 and loss < min_loss)
        min_loss = init * loss if t == 0 else min(min_loss, loss)
        grad_avg = 0.9 * grad_avg + 0.1 * g
        g_hat = grad_avg / (1 - 0.9 ** (t + 1))
        if adam:
            sq_avg = 0.999 * sq_avg + 0.001 * g * g
            v = g_hat / (np.sqrt(sq_avg / (1 - 0.999 ** (t + 1))) + 1e-4)
        else:
            v = g_hat
        eta = fraction * (loss - gamma * min_loss) / (g_hat @ v + epsilon)
        theta = theta - eta * v
        min_loss *= 1 + 1 / tau
        etas.append(eta)
        thetas.append(theta)
    return np.array(etas), np.array(thetas), min_was_replaced


def run_method(cls, optim, batches, **hparams):
    model = make_model()
    driver = ContractDriver(cls(**hparams), model, optim, steps_per_epoch=STEPS)
    lrs, thetas = [], []
    for batch in batches:
        lrs.append(driver.step(batch))
        thetas.append(flat(model))
    return np.array(lrs), np.array(thetas)


@pytest.mark.parametrize("mode", ["ignored", "gradient", "objective"])
@pytest.mark.parametrize(("cls", "adam"), [(L4Mom, False), (L4Adam, True)], ids=["l4-mom", "l4-adam"])
def test_first_step_sizes_and_weights_follow_the_l4_equations(cls, adam, mode):
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(weight_decay=1e-2)
    hparams = {} if mode == "ignored" else {"weight_decay_mode": mode}  # "ignored" is the default
    lrs, thetas = run_method(cls, optim, batches, **hparams)
    ref_lrs, ref_thetas, replaced = reference_l4(batches, adam, 1e-2, mode=mode)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    # both branches of the L_min update are exercised by these batches
    assert any(replaced) and not all(replaced[1:])


def test_the_weight_decay_modes_differ_and_are_recorded():
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(weight_decay=0.2)
    runs = {mode: run_method(L4Mom, optim, batches, weight_decay_mode=mode)[0]
            for mode in ("ignored", "gradient", "objective")}
    assert len({tuple(lrs) for lrs in runs.values()}) == 3
    np.testing.assert_array_equal(runs["ignored"], run_method(L4Mom, OptimSettings(), batches)[0])
    driver = ContractDriver(L4Mom(), make_model(), optim, steps_per_epoch=STEPS)
    info = driver.method.extra_info()
    assert info["l4_weight_decay_mode"] == "ignored" and info["l4_weight_decay"] == 0.0
    assert info["l4_clipped_gradient"] is True
    with pytest.raises(UserError):
        L4Mom(weight_decay_mode="sometimes")


@pytest.mark.parametrize("clipped_gradient", [True, False])
@pytest.mark.parametrize(("cls", "adam"), [(L4Mom, False), (L4Adam, True)], ids=["l4-mom", "l4-adam"])
def test_with_clipping_l4_reads_the_clipped_gradient_unless_told_not_to(cls, adam, clipped_gradient):
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(weight_decay=1e-2, clip_grad_norm=0.3)
    hparams = {"weight_decay_mode": "gradient", "clipped_gradient": clipped_gradient}
    lrs, thetas = run_method(cls, optim, batches, **hparams)
    ref_lrs, ref_thetas, _ = reference_l4(batches, adam, 1e-2, mode="gradient", clip=0.3,
                                          clipped_gradient=clipped_gradient)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    factors = [clip_factor(lsq_value_and_gradient(initial_theta(), b)[1], 0.3) for b in batches[:1]]
    assert factors[0] < 0.5  # the clip is active


def test_clipping_by_c_makes_the_first_l4_step_1_over_c_larger():
    batch = least_squares_batches(1)[0]
    _, grad = lsq_value_and_gradient(initial_theta(), batch)
    c = clip_factor(grad, 0.3)
    steps = {}
    for clipped_gradient in (True, False):
        model = make_model()
        driver = ContractDriver(L4Mom(clipped_gradient=clipped_gradient), model,
                                OptimSettings(clip_grad_norm=0.3), steps_per_epoch=1)
        driver.step(batch)
        steps[clipped_gradient] = flat(model) - initial_theta()
    # eta ~ 1 / (c g . c g) and the update eta * (c g): 1/c times the unclipped update
    np.testing.assert_allclose(steps[True], steps[False] / c, rtol=1e-9)


def test_the_first_step_size_uses_l_min_at_three_quarters_of_the_first_loss():
    batch = least_squares_batches(1)[0]
    lrs, _ = run_method(L4Mom, OptimSettings(), [batch])
    loss, grad = lsq_value_and_gradient(initial_theta(), batch)
    # bias-corrected average of one gradient is the gradient itself
    expected = 0.15 * (loss - 0.9 * 0.75 * loss) / (grad @ grad + 1e-12)
    assert lrs[0] == pytest.approx(expected, rel=1e-12)


def test_the_tasks_momentum_is_ignored_because_l4_brings_its_own():
    batches = least_squares_batches(STEPS)
    plain, _ = run_method(L4Mom, OptimSettings(), batches)
    with_momentum, _ = run_method(L4Mom, OptimSettings(momentum=0.9, nesterov=True), batches)
    np.testing.assert_array_equal(plain, with_momentum)


def test_nondefault_alpha_gamma_and_tau_enter_the_equations():
    batches = least_squares_batches(STEPS)
    hparams = {"fraction": 0.25, "minloss_factor": 0.8, "minloss_forget_time": 5.0}
    lrs, thetas = run_method(L4Adam, OptimSettings(), batches, **hparams)
    ref_lrs, ref_thetas, _ = reference_l4(batches, True, 0.0, fraction=0.25, gamma=0.8, tau=5.0)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cls", [L4Mom, L4Adam], ids=["l4-mom", "l4-adam"])
def test_a_resumed_run_continues_exactly(cls):
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(weight_decay=1e-2, clip_grad_norm=0.3)
    straight_lrs, straight_thetas = run_method(cls, optim, batches, clipped_gradient=False)

    second = interrupt_and_resume(lambda: cls(clipped_gradient=False), optim, batches, 4, steps_per_epoch=STEPS)
    lrs = [second.step(batch) for batch in batches[4:]]
    np.testing.assert_array_equal(lrs, straight_lrs[4:])
    np.testing.assert_array_equal(flat(second.model), straight_thetas[-1])


def test_both_variants_are_selectable_by_name_with_the_papers_defaults():
    assert get_method("l4-mom") is L4Mom
    assert get_method("l4-adam") is L4Adam
    for cls in (L4Mom, L4Adam):
        d = cls.defaults
        assert (d["fraction"], d["minloss_factor"], d["init_factor"], d["minloss_forget_time"]) == (
            0.15, 0.9, 0.75, 1000.0)
    with pytest.raises(UserError):
        L4Mom(alpha=0.2)
    with pytest.raises(UserError):
        L4Adam(adam_var_time=1.0)


# -- in the real training loop (every task: tests/test_every_method_on_every_task.py) ------

@pytest.mark.parametrize("method", ["l4-mom", "l4-adam"])
@pytest.mark.parametrize("task", ["resnet18-cifar10", "lstm2-ptb"])
def test_in_the_training_loop_every_step_size_is_positive(task, method, data_dir):
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    result = train(Cell(task, "smoke", method, overrides={"epochs": 1}))
    assert result.status == "finished"
    assert all(lr > 0 for lr in result.steps["lr"])
