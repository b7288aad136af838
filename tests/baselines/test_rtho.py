"""RTHO (baselines/rtho.py): LRs, weights and tangents of the first steps equal the equations.

Linear least squares with ``nn.Linear(2, 1)`` in float64.  The numpy reference below
recomputes the forward-mode recursion (weights, momentum buffer and their derivatives with
respect to the LR), the held-out hypergradient and the official Adam hyper-step from the
equations alone; a finite-difference check confirms that the tangent really is the
derivative of the weights with respect to the LR.  The method is driven through the
contract in the loop's call order, with held-out batches served like the loop serves them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mlrsnet.baselines.rtho import RealTimeHO
from support.least_squares import (
    ContractDriver,
    design,
    flat,
    initial_theta,
    interrupt_and_resume,
    least_squares_batches,
    lsq_gradient,
    make_model,
)
from torch import nn

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings
from mlrsnet.harness.registry import get_method

STEPS = 8


HELD_OUT = least_squares_batches(2, size=6, seed=11)


def lsq_value(theta: np.ndarray, batch) -> float:
    a = design(batch)
    return 0.5 * float(np.mean((a @ theta - batch[1]) ** 2))


def lsq_hessian(batch) -> np.ndarray:
    a = design(batch)
    return a.T @ a / len(batch[1])


def reference_rtho(batches, eta0, hyper_lr, update_every, val_batches, optim: OptimSettings,
                   positive=True, adapt=True):
    """Franceschi et al.: forward-mode tangents of (w, b) w.r.t. eta, Adam hyper-steps on
    grad E_val(w_{t+1}) . Z_{t+1} every ``update_every`` steps, projection onto eta >= 0."""
    wd, mu, nesterov, clip = optim.weight_decay, optim.momentum, optim.nesterov, optim.clip_grad_norm
    theta, eta = initial_theta(), eta0
    z, q, buffer = np.zeros(3), None, None
    adam_m = adam_v = 0.0
    updates, held_out_index = 0, 0
    lrs, thetas, zs = [], [], []
    for t, batch in enumerate(batches):
        raw = lsq_gradient(theta, batch)
        hz = lsq_hessian(batch) @ z
        norm = np.linalg.norm(raw)
        if clip is not None and norm > clip:
            scale = clip / (norm + 1e-6)  # torch's clip_grad_norm_ factor
            unit = raw / norm
            raw = raw * scale
            hz = scale * (hz - unit * (unit @ hz))
        g = raw + wd * theta
        hz = hz + wd * z
        if mu == 0:
            d, dd = g, hz
        else:
            buffer = g.copy() if buffer is None else mu * buffer + g
            q = hz.copy() if q is None else mu * q + hz
            d, dd = (g + mu * buffer, hz + mu * q) if nesterov else (buffer, q)
        lrs.append(eta)
        theta = theta - eta * d
        z = z - eta * dd - d
        thetas.append(theta)
        zs.append(z)
        if adapt and (t + 1) % update_every == 0:
            hypergradient = 0.0
            for _ in range(val_batches):
                held = HELD_OUT[held_out_index % len(HELD_OUT)]
                held_out_index += 1
                hypergradient += lsq_gradient(theta, held) @ z
            hypergradient /= val_batches
            updates += 1
            adam_m = 0.9 * adam_m + 0.1 * hypergradient
            adam_v = 0.999 * adam_v + 0.001 * hypergradient**2
            step = hyper_lr * math.sqrt(1 - 0.999**updates) / (1 - 0.9**updates)
            eta = eta - step * adam_m / math.sqrt(adam_v + 1e-8)
            if positive:
                eta = max(eta, 0.0)
    return np.array(lrs), np.array(thetas), np.array(zs)


def run_method(optim, batches, **hparams):
    model = make_model()
    driver = ContractDriver(RealTimeHO(**hparams), model, optim, steps_per_epoch=STEPS, held_out=HELD_OUT)
    lrs, thetas = [], []
    for batch in batches:
        lrs.append(driver.step(batch))
        thetas.append(flat(model))
    return np.array(lrs), np.array(thetas), driver


SETTINGS = {
    "sgd": OptimSettings(weight_decay=1e-2),
    "heavy-ball": OptimSettings(momentum=0.9, weight_decay=1e-2),
    "nesterov": OptimSettings(momentum=0.9, weight_decay=1e-2, nesterov=True),
    "clipped": OptimSettings(momentum=0.5, weight_decay=1e-2, clip_grad_norm=0.5),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_first_lrs_and_weights_follow_the_forward_mode_equations(setting):
    optim = SETTINGS[setting]
    batches = least_squares_batches(STEPS)
    hparams = {"lr": 0.1, "hyper_lr": 0.01, "update_every": 2, "val_batches": 2}
    lrs, thetas, driver = run_method(optim, batches, **hparams)
    ref_lrs, ref_thetas, ref_zs = reference_rtho(batches, 0.1, 0.01, 2, 2, optim)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    z = torch.cat([t.reshape(-1) for t in driver.method.state_dict()["z"]]).numpy()
    np.testing.assert_allclose(z, ref_zs[-1], rtol=0, atol=1e-10)
    assert driver.held_out_served == 8  # 4 hyper-steps x 2 held-out batches
    assert np.ptp(lrs) > 1e-3  # the LR really moved


@pytest.mark.parametrize("setting", ["heavy-ball", "nesterov", "clipped"])
def test_the_tangent_is_the_derivative_of_the_weights_with_respect_to_the_lr(setting):
    """Independent of the recursion: central finite differences of the whole trajectory."""
    optim = SETTINGS[setting]
    batches = least_squares_batches(STEPS)
    eta, delta = 0.1, 1e-6
    _, _, driver = run_method(optim, batches, lr=eta, hyper_lr=0.0, update_every=1000)
    z = torch.cat([t.reshape(-1) for t in driver.method.state_dict()["z"]]).numpy()
    _, up, _ = reference_rtho(batches, eta + delta, 0.0, 1000, 1, optim, adapt=False)
    _, down, _ = reference_rtho(batches, eta - delta, 0.0, 1000, 1, optim, adapt=False)
    finite_difference = (up[-1] - down[-1]) / (2 * delta)
    np.testing.assert_allclose(z, finite_difference, rtol=1e-5, atol=1e-8)
    assert np.linalg.norm(z) > 0.1


def test_a_negative_lr_is_projected_to_zero_only_when_positivity_is_on():
    optim = OptimSettings()
    batches = least_squares_batches(4)
    hparams = {"lr": 1.5, "hyper_lr": 1.0, "update_every": 1, "val_batches": 1}
    projected, _, _ = run_method(optim, batches, **hparams)
    free, free_thetas, _ = run_method(optim, batches, positive=False, **hparams)
    ref_free, ref_thetas, _ = reference_rtho(batches, 1.5, 1.0, 1, 1, optim, positive=False)
    np.testing.assert_allclose(free, ref_free, rtol=0, atol=1e-10)
    np.testing.assert_allclose(free_thetas, ref_thetas, rtol=0, atol=1e-10)
    assert free.min() < 0
    assert projected.min() == 0.0


def test_a_resumed_run_continues_exactly():
    optim = SETTINGS["nesterov"]
    batches = least_squares_batches(STEPS)
    hparams = {"lr": 0.1, "hyper_lr": 0.01, "update_every": 2, "val_batches": 1}
    straight_lrs, straight_thetas, _ = run_method(optim, batches, **hparams)

    # stop after step 3, between two hyper-steps
    second = interrupt_and_resume(lambda: RealTimeHO(**hparams), optim, batches, 3, steps_per_epoch=STEPS,
                                  held_out=HELD_OUT)
    lrs = [second.step(batch) for batch in batches[3:]]
    np.testing.assert_array_equal(lrs, straight_lrs[3:])
    np.testing.assert_array_equal(flat(second.model), straight_thetas[-1])


def test_without_held_out_data_binding_fails_with_a_readable_error():
    with pytest.raises(UserError, match="held-out"):
        ContractDriver(RealTimeHO(), make_model(), OptimSettings(), steps_per_epoch=STEPS, held_out=[])


def test_rtho_is_selectable_by_name_with_the_official_defaults():
    assert get_method("rtho") is RealTimeHO
    driver = ContractDriver(RealTimeHO(), make_model(), OptimSettings(), steps_per_epoch=STEPS, held_out=HELD_OUT)
    method = driver.method
    assert (method.initial_lr(), method.hyper_lr(), method.hparams["positive"]) == (0.075, 5e-3, True)
    assert method.hparams["val_batches"] is None  # the whole held-out set, as FAR-HO
    with pytest.raises(UserError):
        RealTimeHO(update_every=0)
    with pytest.raises(UserError):
        RealTimeHO(val_batches=1.5)
    with pytest.raises(UserError):
        RealTimeHO(hyper_learning_rate=0.1)


def test_rnns_run_without_cudnn_on_gpus_because_cudnn_rnns_have_no_double_backward():
    from mlrsnet.baselines._tangent import run_rnns_without_cudnn

    model = nn.Sequential(nn.LSTM(3, 4))
    run_rnns_without_cudnn(model)
    seen_inside = []
    model[0].register_forward_pre_hook(lambda *_: seen_inside.append(torch.backends.cudnn.enabled))
    before = torch.backends.cudnn.enabled
    model(torch.zeros(2, 1, 3))
    assert seen_inside == [False]
    assert torch.backends.cudnn.enabled == before


class PassSource:
    """Held-out batches in passes, saying how many batches a pass takes (as the workloads' sources)."""

    def __init__(self, batches):
        self.batches, self.position, self.served = batches, 0, 0

    batches_per_pass = property(lambda self: len(self.batches))

    def __iter__(self):
        return self

    def __next__(self):
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        self.served += 1
        return batch


def test_by_default_the_hypergradient_is_that_of_the_mean_loss_over_the_whole_held_out_set():
    """Batches of unequal size (5 and 3 examples): the hypergradient is grad of the mean
    over all 8 held-out examples (FAR-HO feeds the whole validation set), dotted with Z."""
    held = least_squares_batches(2, size=5, seed=3)
    held[1] = (held[1][0][:3], held[1][1][:3])
    optim = SETTINGS["heavy-ball"]
    batches = least_squares_batches(4)
    driver = ContractDriver(RealTimeHO(lr=0.1, hyper_lr=0.01, update_every=4), make_model(), optim,
                            steps_per_epoch=STEPS, held_out=HELD_OUT)
    source = PassSource(held)
    driver.run.held_out.batches = source
    for batch in batches[:3]:
        driver.step(batch)
    driver.step(batches[3])  # the hyper-step after step 4
    _, ref_thetas, ref_zs = reference_rtho(batches, 0.1, 0.0, 1000, 1, optim, adapt=False)
    whole = (np.vstack([held[0][0], held[1][0]]), np.concatenate([held[0][1], held[1][1]]))
    expected = lsq_gradient(ref_thetas[-1], whole) @ ref_zs[-1]
    method = driver.method
    assert source.served == 2  # one pass
    assert method.state_dict()["last_hypergradient"] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # first Adam step: eta - hyper_lr * sign(h) (bias-corrected m/sqrt(v) = h/sqrt(h^2 + 1e-8 / 0.001))
    m, v = 0.1 * expected, 0.001 * expected**2
    step = 0.01 * math.sqrt(1 - 0.999) / (1 - 0.9)
    assert method.lr(None) == pytest.approx(0.1 - step * m / math.sqrt(v + 1e-8), rel=1e-12)
    assert method.extra_info()["rtho_held_out_batches_per_pass"] == 2
    assert method.extra_info()["rtho_held_out_batches_per_hyper_step"] == 2
    # an int takes that many batches instead, whatever a pass is
    counted = ContractDriver(RealTimeHO(lr=0.1, update_every=1, val_batches=3), make_model(), optim,
                             steps_per_epoch=STEPS, held_out=HELD_OUT)
    counted.run.held_out.batches = other = PassSource(held)
    counted.step(batches[0])
    assert other.served == 3


def test_a_stand_in_source_without_a_pass_length_gives_one_batch_per_hyper_step():
    driver = ContractDriver(RealTimeHO(update_every=1), make_model(), OptimSettings(), steps_per_epoch=STEPS,
                            held_out=HELD_OUT)
    driver.step(least_squares_batches(1)[0])
    assert driver.held_out_served == 1
    assert driver.method.extra_info()["rtho_held_out_batches_per_hyper_step"] == 1


@pytest.mark.parametrize(("profile", "total_steps", "expected"), [
    ("paper", 76_600, 100),  # the official hyper_batch_size, whatever the run's length
    ("mini", 160, 8),  # ResNet-18 mini: 5 epochs x 32 steps -> 20 hyper-steps (was 1)
    ("smoke", 8, 1),  # 8 hyper-steps (was none)
    ("mini", 50_000, 100),  # never rarer than the official interval
])
def test_update_every_scales_with_the_profile(profile, total_steps, expected):
    from mlrsnet.baselines.rtho import scaled_update_every

    assert scaled_update_every(profile, total_steps) == expected
    if profile != "paper":
        assert total_steps // expected >= min(20, total_steps)


def test_on_language_models_the_lr_starts_at_the_tasks_base_lr_with_a_scaled_hyper_lr():
    from support.least_squares import StubTask, StubWorkload

    from mlrsnet.harness.step import start_run

    def bound(kind, **hparams):
        method = RealTimeHO(**hparams)
        workload = StubWorkload(4, 10, iter(HELD_OUT), lambda params, batch: None)
        start_run(method, make_model(), task=StubTask(OptimSettings(), kind=kind, base_lr=20.0), workload=workload,
                  scale="reduced", epochs=1, seed=0, device=torch.device("cpu"))
        return method

    text = bound("text")
    assert (text.lr(None), text.hyper_lr()) == (20.0, pytest.approx(5e-3 * 20 / 0.075))
    assert bound("image").lr(None) == 0.075
    assert bound("text", lr=5.0, hyper_lr=0.1).lr(None) == 5.0
    low, high = RealTimeHO.space("text")["lr"][1:]
    assert low <= 20.0 <= high
    assert RealTimeHO.space("image") == RealTimeHO.search_space


# -- in the real training loop (every task: tests/test_every_method_on_every_task.py) ------

@pytest.mark.parametrize("task", ["resnet18-cifar10", "lstm2-ptb"])
def test_in_the_training_loop_hyper_steps_on_held_out_data_move_the_lr(task, data_dir):
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    # defaults: the smoke run is short, so a hyper-step after every step, on the whole held-out set
    result = train(Cell(task, "smoke", "rtho", overrides={"epochs": 1}))
    lrs = result.steps["lr"]
    info = result.method_info
    assert result.status == "finished"
    assert lrs[0] == (0.075 if task.startswith("resnet") else 20.0) and lrs[1] != lrs[0]
    assert info["rtho_update_every"] == 1 and info["rtho_hyper_steps"] == len(lrs)
    assert info["rtho_val_batches"] == "whole held-out set"
    if task.startswith("resnet"):
        assert info["rtho_held_out_batches_per_pass"] == 2  # 64 held-out images at batch 32
        # every convolution and BatchNorm of ResNet-18 takes the suite's second-order passes
        assert info["second_order_layers"]["conv2d"] == info["second_order_layers"]["batch_norm"] > 0, info
    else:
        assert info["second_order_layers"] == {}
