"""HD (baselines/hd.py): the LR and weights of the first steps equal the paper's equations,
for SGD-HD / SGDM-HD / SGDN-HD (``hd``) and Adam-HD (``hd-adam``).

The problem is linear least squares with ``nn.Linear(2, 1)`` in float64, small enough that
the reference below recomputes every step with numpy from the update equations alone.
The method is driven through the contract in the loop's call order.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlrsnet.baselines.hd import AdamHD, HypergradientDescent
from support.least_squares import (
    ContractDriver,
    flat,
    initial_theta,
    interrupt_and_resume,
    least_squares_batches,
    lsq_gradient,
    make_model,
)

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings
from mlrsnet.harness.registry import get_method

STEPS = 6


def clipped(g: np.ndarray, clip: float | None) -> np.ndarray:
    """``torch.nn.utils.clip_grad_norm_`` by hand: g * min(1, clip / (|g| + 1e-6))."""
    if clip is None:
        return g
    return g * min(1.0, clip / (np.linalg.norm(g) + 1e-6))


def reference_hd(batches, alpha0, beta, weight_decay, momentum, nesterov, clamp=False, clip=None):
    """Baydin et al.: alpha_t = alpha_{t-1} + beta g_t.u_{t-1}; w <- w - alpha_t u_t."""
    theta, alpha = initial_theta(), alpha0
    previous_direction, buffer = np.zeros(3), None
    lrs, thetas = [], []
    for batch in batches:
        g = clipped(lsq_gradient(theta, batch), clip) + weight_decay * theta
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


def run_method(hparams, optim, batches, cls=HypergradientDescent):
    model = make_model()
    driver = ContractDriver(cls(**hparams), model, optim, steps_per_epoch=STEPS)
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


def test_the_clipped_gradient_is_what_hd_sees():
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(momentum=0.9, weight_decay=1e-2, clip_grad_norm=0.3)
    hparams = {"lr": 0.05, "hyper_lr": 0.5}
    lrs, thetas = run_method(hparams, optim, batches)
    ref_lrs, ref_thetas = reference_hd(batches, 0.05, 0.5, 1e-2, 0.9, False, clip=0.3)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    unclipped_lrs, _ = reference_hd(batches, 0.05, 0.5, 1e-2, 0.9, False)
    assert np.abs(unclipped_lrs - ref_lrs).max() > 1e-3  # the clip is active on these batches


# -- Adam-HD -----------------------------------------------------------------------------

def reference_adam_hd(batches, alpha0, beta, weight_decay, per_tensor, b1=0.9, b2=0.999, eps=1e-8, clip=None):
    """Adam-HD from its equations: h = g_t . m_{t-1}/(sqrt(v_{t-1}) + eps) sqrt(1-b2^(t-1))/(1-b1^(t-1)),
    alpha += beta h, then Adam's step with the new alpha.  ``per_tensor``: the weight (w1, w2)
    and then the bias move the LR in turn, each stepping with the LR moved so far."""
    theta, alpha = initial_theta(), alpha0
    m, v = np.zeros(3), np.zeros(3)
    tensors = [slice(0, 2), slice(2, 3)]  # nn.Linear's parameters in order: weight, bias
    lrs, thetas = [], []
    for t, batch in enumerate(batches, start=1):
        g = clipped(lsq_gradient(theta, batch), clip) + weight_decay * theta
        if t > 1:
            h = [g[s] @ (m[s] / (np.sqrt(v[s]) + eps)) * np.sqrt(1 - b2 ** (t - 1)) / (1 - b1 ** (t - 1))
                 for s in tensors]
        step_lrs = []
        for k in range(len(tensors)):
            if t > 1 and per_tensor:
                alpha += beta * h[k]
            elif t > 1 and k == 0:
                alpha += beta * sum(h)
            step_lrs.append(alpha)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        for s, a in zip(tensors, step_lrs, strict=True):
            theta[s] = theta[s] - a * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m[s] / (np.sqrt(v[s]) + eps)
        lrs.append(alpha)
        thetas.append(theta.copy())
    return np.array(lrs), np.array(thetas)


@pytest.mark.parametrize("lr_update", ["per-tensor", "global"])
def test_adam_hd_follows_its_equations(lr_update):
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(weight_decay=1e-2)
    hparams = {"lr": 0.05, "hyper_lr": 0.01, "lr_update": lr_update}
    lrs, thetas = run_method(hparams, optim, batches, cls=AdamHD)
    ref_lrs, ref_thetas = reference_adam_hd(batches, 0.05, 0.01, 1e-2, lr_update == "per-tensor")
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-12)
    assert lrs[0] == 0.05 and np.ptp(lrs) > 1e-3
    # the two LR updates differ: within a step the bias already steps with the moved LR
    other_lrs, other_thetas = reference_adam_hd(batches, 0.05, 0.01, 1e-2, lr_update != "per-tensor")
    assert np.abs(other_thetas - ref_thetas).max() > 1e-6


def test_adam_hd_sees_the_clipped_gradient_and_resumes_exactly():
    batches = least_squares_batches(STEPS)
    optim = OptimSettings(weight_decay=1e-2, clip_grad_norm=0.3)
    hparams = {"lr": 0.05, "hyper_lr": 0.01}
    lrs, thetas = run_method(hparams, optim, batches, cls=AdamHD)
    ref_lrs, ref_thetas = reference_adam_hd(batches, 0.05, 0.01, 1e-2, True, clip=0.3)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-12)

    second = interrupt_and_resume(lambda: AdamHD(**hparams), optim, batches, 3, steps_per_epoch=STEPS)
    resumed = [second.step(batch) for batch in batches[3:]]
    np.testing.assert_array_equal(resumed, lrs[3:])
    np.testing.assert_array_equal(flat(second.model), thetas[-1])


def test_adam_hd_is_selectable_and_checks_its_settings():
    assert get_method("hd-adam") is AdamHD
    assert AdamHD.defaults["beta1"] == 0.9 and AdamHD.defaults["beta2"] == 0.999
    assert AdamHD.defaults["eps"] == 1e-8 and AdamHD.defaults["lr_update"] == "per-tensor"
    with pytest.raises(UserError):
        AdamHD(lr_update="sometimes")
    with pytest.raises(UserError):
        AdamHD(momentum=0.9)


# -- defaults per task kind -----------------------------------------------------------------

def bound(cls, kind, base_lr=20.0, **hparams):
    from support.least_squares import StubTask, StubWorkload

    from mlrsnet.harness.step import start_run

    method = cls(**hparams)
    start_run(method, make_model(), task=StubTask(OptimSettings(), kind=kind, base_lr=base_lr),
              workload=StubWorkload(steps_per_epoch=4), scale="reduced", epochs=1, seed=0,
              device=__import__("torch").device("cpu"))
    return method


def inside(space_entry, value):
    _, low, high = space_entry
    return low <= value <= high


def test_images_keep_the_papers_values():
    assert HypergradientDescent.defaults["lr"] is None and HypergradientDescent.defaults["hyper_lr"] is None
    assert HypergradientDescent.defaults["clamp_nonneg"] is False
    for cls, beta in ((HypergradientDescent, 1e-3), (AdamHD, 1e-8)):
        info = bound(cls, "image", base_lr=0.1).extra_info()
        assert (info["hd_initial_lr"], info["hd_hyper_lr"]) == (1e-3, beta)
        assert info["hd_lr_rule"] == info["hd_hyper_lr_rule"] == "paper"
        space = cls.space("image")
        assert inside(space["lr"], 1e-3) and inside(space["hyper_lr"], beta)


def test_on_text_hd_starts_from_the_base_lr_with_a_hyper_lr_scaled_to_it():
    info = bound(HypergradientDescent, "text", base_lr=20.0).extra_info()
    # the paper's beta / alpha_0 = 1e-3 / 1e-3 kept: beta = 1 * 20
    assert info["hd_initial_lr"] == 20.0 and info["hd_hyper_lr"] == pytest.approx(20.0, rel=1e-12)
    assert info["hd_lr_rule"] == "task base LR (text)" and "text" in info["hd_hyper_lr_rule"]
    space = HypergradientDescent.space("text")
    assert inside(space["lr"], 20.0) and inside(space["hyper_lr"], 20.0)
    given = bound(HypergradientDescent, "text", lr=5.0, hyper_lr=0.1).extra_info()
    assert (given["hd_initial_lr"], given["hd_hyper_lr"], given["hd_lr_rule"]) == (5.0, 0.1, "given")
    # Adam's LR scale does not follow SGD's base LR: the paper's values on text too
    adam = bound(AdamHD, "text", base_lr=20.0).extra_info()
    assert (adam["hd_initial_lr"], adam["hd_hyper_lr"]) == (1e-3, 1e-8)
    assert inside(AdamHD.space("text")["lr"], 1e-3)


# -- in the real training loop (every task: tests/test_every_method_on_every_task.py) ------

@pytest.mark.parametrize(("task", "first_lr"), [("resnet18-cifar10", 1e-3), ("lstm2-ptb", 20.0)])
def test_in_the_training_loop_the_first_lr_is_the_initial_lr(task, first_lr, data_dir):
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    result = train(Cell(task, "smoke", "hd", overrides={"epochs": 1}))
    assert result.status == "finished"
    assert result.steps["lr"][0] == first_lr
    assert result.method_info["hd_initial_lr"] == first_lr
