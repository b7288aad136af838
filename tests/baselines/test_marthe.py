"""MARTHE (baselines/marthe.py), and RTHO / HD against the rules of the authors' code.

The network is small and nonlinear (Linear -> BatchNorm -> ReLU -> Linear, float64, batch
statistics in train mode).  The references below recompute every update from the
equations with a hand-written forward pass of the same network as a function of the flat
parameter vector and its *full* Hessian (``torch.autograd.functional.hessian``), so they
share neither the methods' Hessian-vector products nor their BatchNorm:

* ``paper_rule``: MARTHE as the paper states it, ``Z_{t+1} = mu A_t Z_t + B_t`` with
  ``A_t`` at the step's LR, weight decay and momentum in the dynamics, ``eta >= 0``; the
  hyper-step either MARTHE's (SGD on eta every step, beta adapted by
  ``beta + alpha h eta``) or RTHO's (Adam every ``update_every`` steps).
* ``adatune_rule``: ``adatune/mu_sgd.py`` (``MuSGD.compute_hg`` / ``hyper_step``) re-derived
  from its equations: the tangent built from the gradient WITHOUT weight decay (weight decay
  only in torch's SGD step), the INITIAL LR in ``A_t``, element-wise clamping of gradient,
  Hessian-vector product and validation gradient, no projection of eta, and with momentum
  the first step without a tangent.  Where adatune's code differs from the paper
  (validation batches from the test loader, frozen initial LR, clamping, weight decay out
  of the tangent, first momentum step), the method's defaults follow the paper; with the
  options ``tangent_lr="initial"``, ``grad_clamp=100``, ``positive=False`` on a task
  without weight decay or momentum the method reproduces adatune's rule.
* ``hd_rule``: ``SGDHD`` (adatune's ``hd_sgd.py``, a copy of Baydin et al.'s), for ``hd``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlrsnet.baselines.marthe import Marthe
from support.least_squares import (
    ContractDriver,
    flat,
    interrupt_and_resume,
    least_squares_batches,
    make_model,
    start_stub_run,
)
from torch import nn
from torch.func import functional_call

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings, StepInfo
from mlrsnet.harness.registry import get_method
from mlrsnet.harness.step import train_step

IN, HIDDEN, CLASSES, BATCH = 3, 6, 3, 8
SHAPES = [(HIDDEN, IN), (HIDDEN,), (HIDDEN,), (HIDDEN,), (CLASSES, HIDDEN), (CLASSES,)]
BN_EPS = 1e-5
STEPS = 6


def make_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(IN, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES)).double()
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.normal_(0.0, 0.2)
    return net


def batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH, IN, generator=g, dtype=torch.float64), torch.randint(0, CLASSES, (BATCH,), generator=g))
            for _ in range(count)]


TRAIN = batches(STEPS, seed=1)
HELD = batches(3, seed=2)


# -- the reference network: a hand-written forward pass of the flat parameter vector --------
def unflat(theta: torch.Tensor) -> list[torch.Tensor]:
    out, k = [], 0
    for shape in SHAPES:
        n = math.prod(shape)
        out.append(theta[k:k + n].reshape(shape))
        k += n
    return out


def ref_loss(theta: torch.Tensor, batch) -> torch.Tensor:
    w1, b1, gamma, beta, w2, b2 = unflat(theta)
    x, y = batch
    h = x @ w1.T + b1
    mean = h.mean(0)
    var = ((h - mean) ** 2).mean(0)  # BatchNorm normalises with the biased batch variance
    r = torch.relu((h - mean) / torch.sqrt(var + BN_EPS) * gamma + beta)
    logits = r @ w2.T + b2
    return -(logits.log_softmax(1)[torch.arange(len(y)), y]).mean()


def ref_grad(theta: torch.Tensor, batch) -> torch.Tensor:
    t = theta.detach().clone().requires_grad_(True)
    return torch.autograd.grad(ref_loss(t, batch), t)[0].detach()


def ref_hessian(theta: torch.Tensor, batch) -> torch.Tensor:
    return torch.autograd.functional.hessian(lambda t: ref_loss(t, batch), theta.detach())


def initial_theta() -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in make_net().parameters()])


def paper_rule(eta, beta, mu, alpha, optim: OptimSettings, *, hyper="marthe", update_every=1, positive=True):
    """MARTHE / RTHO from the equations; returns the LRs used and the weights after each step."""
    wd, m = optim.weight_decay, optim.momentum
    theta = initial_theta()
    z = torch.zeros_like(theta)
    q = buf = None
    adam_m = adam_v = 0.0
    held = itertools.cycle(HELD)
    lrs, thetas, zs, updates = [], [], [], 0
    for t, batch in enumerate(TRAIN):
        g = ref_grad(theta, batch) + wd * theta
        hz = ref_hessian(theta, batch) @ z + wd * z
        if m:
            buf = g.clone() if buf is None else m * buf + g
            q_new = hz.clone() if q is None else m * q + hz
            d, big_d = buf, q_new
        else:
            d, big_d, q_new = g, hz, None
        lrs.append(eta)
        theta = theta - eta * d
        z = mu * (z - eta * big_d) - d
        q = None if q_new is None else mu * q_new
        thetas.append(theta)
        zs.append(z)
        if (t + 1) % update_every:
            continue
        h = float(ref_grad(theta, next(held)) @ z)
        updates += 1
        if hyper == "marthe":
            eta = eta - beta * h
            if positive:
                eta = max(eta, 0.0)
            beta = max(beta + alpha * h * eta, 0.0)
        else:  # RTHO's official Adam hyper-step
            adam_m = 0.9 * adam_m + 0.1 * h
            adam_v = 0.999 * adam_v + 0.001 * h**2
            eta -= beta * math.sqrt(1 - 0.999**updates) / (1 - 0.9**updates) * adam_m / math.sqrt(adam_v + 1e-8)
            eta = max(eta, 0.0)
    return np.array(lrs), torch.stack(thetas).numpy(), torch.stack(zs).numpy()


def adatune_rule(eta, beta, mu, alpha, optim: OptimSettings, clamp=100.0):
    """``MuSGD`` of adatune re-derived: see the module docstring for what differs from the paper."""
    wd, m = optim.weight_decay, optim.momentum
    lr0 = eta
    theta = initial_theta()
    z0 = z1 = None
    buf = None  # torch SGD's momentum buffer (weight decay inside)
    started = False
    held = itertools.cycle(HELD)
    lrs, thetas = [], []
    for batch in TRAIN:
        g = ref_grad(theta, batch).clamp(-clamp, clamp)  # clamped in place: the step uses it too
        skip = m > 0 and not started
        started = True
        if not skip:
            v = buf if buf is not None else torch.zeros_like(theta)
            if z0 is None:
                z0 = -(m * v + g)
                z1 = torch.zeros_like(theta)
            else:
                hvp = (ref_hessian(theta, batch) @ z0).clamp(-clamp, clamp)
                z0 = mu * (z0 - (lr0 * hvp + lr0 * m * z1)) - (m * v + g)
                z1 = mu * (hvp + m * z1)
        step_grad = g + wd * theta
        buf = step_grad.clone() if buf is None else m * buf + step_grad
        lrs.append(eta)
        theta = theta - eta * (buf if m else step_grad)
        thetas.append(theta)
        held_batch = next(held)
        if z0 is None:
            continue
        h = float(ref_grad(theta, held_batch).clamp(-clamp, clamp) @ z0)
        eta = eta - beta * h  # plain SGD on the LR tensor, not projected
        beta = max(beta + alpha * h * eta, 0.0)
    return np.array(lrs), torch.stack(thetas).numpy()


def hd_rule(eta, beta, optim: OptimSettings):
    """Baydin et al.'s ``SGDHD`` (copied into adatune as ``hd_sgd.py``) from its equations."""
    wd, m = optim.weight_decay, optim.momentum
    theta = initial_theta()
    prev = torch.zeros_like(theta)
    buf = None
    lrs, thetas = [], []
    for batch in TRAIN:
        g = ref_grad(theta, batch) + wd * theta
        eta = eta + beta * float(g @ prev)  # the LR moves first, with this step's gradient
        if m:
            buf = g.clone() if buf is None else m * buf + g
            d = g + m * buf if optim.nesterov else buf
        else:
            d = g
        prev = d
        lrs.append(eta)
        theta = theta - eta * d
        thetas.append(theta)
    return np.array(lrs), torch.stack(thetas).numpy()


# -- the methods through the loop's own step -------------------------------------------------
def run_ours(method, optim: OptimSettings):
    net = make_net()

    def meta_loss(params, batch):
        state = {**{n: b.clone() for n, b in net.named_buffers()}, **params}
        return F.cross_entropy(functional_call(net, state, (batch[0],)), batch[1])

    run = start_stub_run(method, net, optim, steps_per_epoch=STEPS, held_out_batches=itertools.cycle(HELD),
                         held_out_loss=meta_loss)
    lrs, thetas = [], []
    for t, (x, y) in enumerate(TRAIN):
        loss = F.cross_entropy(net(x), y)
        result = train_step(method, StepInfo(step=t, epoch=0, index_in_epoch=t, loss=loss), run.params,
                            run.optimizer, optim.clip_grad_norm)
        assert not result.diverged
        lrs.append(result.lr)
        thetas.append(flat(net))
    return np.array(lrs), np.array(thetas), method


def flat_z(method) -> np.ndarray:
    return torch.cat([t.reshape(-1) for t in method.state_dict()["z"]]).numpy()


DECAY = OptimSettings(weight_decay=5e-3)
HEAVY = OptimSettings(momentum=0.9, weight_decay=5e-3)
PLAIN = OptimSettings()


@pytest.mark.parametrize("optim", [DECAY, HEAVY], ids=["sgd-wd", "momentum-wd"])
@pytest.mark.parametrize("mu", [0.0, 0.9, 1.0])
def test_marthe_follows_the_papers_rule_on_a_relu_batchnorm_network(optim, mu):
    hp = {"lr": 0.2, "hyper_lr": 0.05, "mu": mu, "alpha": 0.5}
    lrs, thetas, method = run_ours(Marthe(**hp), optim)
    ref_lrs, ref_thetas, ref_zs = paper_rule(0.2, 0.05, mu, 0.5, optim)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    np.testing.assert_allclose(flat_z(method), ref_zs[-1], rtol=0, atol=1e-9)
    assert np.ptp(lrs) > 1e-3 and method.state_dict()["hyper_lr"] != 0.05  # LR and beta moved


def test_with_adatunes_options_marthe_reproduces_adatunes_rule():
    """No weight decay or momentum (adatune's tangent ignores the one and skips the first
    step of the other): then ``tangent_lr="initial"``, ``grad_clamp=100``, ``positive=False``
    are adatune's ``MuSGD`` exactly, and the paper's defaults really differ from it."""
    hp = {"lr": 0.2, "hyper_lr": 0.05, "mu": 0.9, "alpha": 0.5}
    lrs, thetas, _ = run_ours(Marthe(**hp, tangent_lr="initial", grad_clamp=100.0, positive=False), PLAIN)
    ref_lrs, ref_thetas = adatune_rule(0.2, 0.05, 0.9, 0.5, PLAIN)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    paper_lrs, _, _ = run_ours(Marthe(**hp), PLAIN)
    assert np.abs(paper_lrs - ref_lrs).max() > 1e-6  # the current LR in A_t, not the initial one
    # the clamp bites when the gradients are larger than it (adatune's +-100 does not here)
    clamped, _, _ = run_ours(Marthe(**hp, tangent_lr="initial", grad_clamp=0.05, positive=False), PLAIN)
    ref_clamped, _ = adatune_rule(0.2, 0.05, 0.9, 0.5, PLAIN, clamp=0.05)
    np.testing.assert_allclose(clamped, ref_clamped, rtol=0, atol=1e-10)
    assert np.abs(clamped - ref_lrs).max() > 1e-6


@pytest.mark.parametrize("optim", [DECAY, HEAVY], ids=["sgd-wd", "momentum-wd"])
def test_where_adatune_leaves_weight_decay_or_the_first_momentum_step_out_of_the_tangent_we_follow_the_paper(optim):
    hp = {"lr": 0.2, "hyper_lr": 0.05, "mu": 0.9, "alpha": 0.0}
    lrs, _, _ = run_ours(Marthe(**hp, tangent_lr="initial", grad_clamp=100.0, positive=False), optim)
    adatune_lrs, _ = adatune_rule(0.2, 0.05, 0.9, 0.0, optim)
    assert np.abs(lrs - adatune_lrs).max() > 1e-8


def test_adatunes_rtho_is_marthe_with_mu_one_and_rtho_shares_its_tangent():
    """adatune's RTHO (``mu = 1``) vs MARTHE with ``mu = 1``; the suite's ``rtho`` keeps the
    official Adam hyper-step every ``update_every`` steps (RFHO), on the same tangent."""
    lrs, thetas, _ = run_ours(Marthe(lr=0.2, hyper_lr=0.05, mu=1.0, alpha=0.0, tangent_lr="initial",
                                     grad_clamp=100.0, positive=False), PLAIN)
    ref_lrs, ref_thetas = adatune_rule(0.2, 0.05, 1.0, 0.0, PLAIN)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)

    rtho = get_method("rtho")(lr=0.2, hyper_lr=0.01, update_every=2, val_batches=1)
    lrs, thetas, rtho = run_ours(rtho, HEAVY)
    ref_lrs, ref_thetas, ref_zs = paper_rule(0.2, 0.01, 1.0, 0.0, HEAVY, hyper="rtho", update_every=2)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)
    # the tangent against the full-Hessian reference, on BatchNorm + ReLU (issue 12's 1e-6)
    np.testing.assert_allclose(flat_z(rtho), ref_zs[-1], rtol=0, atol=1e-6)


def test_mu_zero_forgets_all_but_the_last_step_as_hd():
    """``mu = 0``: Z_{t+1} = -d_t, so the hyper-step is HD's with the held-out gradient."""
    lrs, thetas, method = run_ours(Marthe(lr=0.2, hyper_lr=0.0, mu=0.0, alpha=0.0), HEAVY)
    last_direction = (thetas[-2] - thetas[-1]) / lrs[-1]
    np.testing.assert_allclose(flat_z(method), -last_direction, rtol=0, atol=1e-12)


@pytest.mark.parametrize("optim", [PLAIN, OptimSettings(momentum=0.9, weight_decay=5e-3, nesterov=True)],
                         ids=["sgd", "nesterov-wd"])
def test_hd_follows_adatunes_copy_of_sgdhd(optim):
    lrs, thetas, _ = run_ours(get_method("hd")(lr=0.2, hyper_lr=0.05), optim)
    ref_lrs, ref_thetas = hd_rule(0.2, 0.05, optim)
    np.testing.assert_allclose(lrs, ref_lrs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(thetas, ref_thetas, rtol=0, atol=1e-10)


def test_defaults_are_adatunes_and_bad_values_are_refused():
    assert get_method("marthe") is Marthe
    d = Marthe.defaults
    assert (d["mu"], d["alpha"], d["update_every"], d["val_batches"]) == (0.99999, 1e-6, 1, 1)
    assert (d["tangent_lr"], d["grad_clamp"], d["positive"]) == ("current", None, True)
    driver = ContractDriver(Marthe(), make_model(), OptimSettings(), steps_per_epoch=4,
                            held_out=least_squares_batches(2, seed=3))
    assert (driver.method.lr(None), driver.method.initial_hyper_lr()) == (0.01, 1e-8)
    for bad in ({"mu": -1.0}, {"mu": 1.5}, {"tangent_lr": "frozen"}, {"grad_clamp": 0.0}, {"alpha": -1.0},
                {"update_every": 0}, {"val_batches": 0}):
        with pytest.raises(UserError):
            Marthe(**bad)
    low, high = Marthe.space("text")["lr"][1:]
    assert low <= 20.0 <= high


def test_a_resumed_run_continues_exactly():
    optim = OptimSettings(momentum=0.9, weight_decay=1e-2, nesterov=True)
    steps = least_squares_batches(8)
    held = least_squares_batches(2, size=6, seed=11)
    hp = {"lr": 0.1, "hyper_lr": 1e-3, "mu": 0.9, "alpha": 1e-2}
    straight = ContractDriver(Marthe(**hp), make_model(), optim, steps_per_epoch=8, held_out=held)
    straight_lrs = [straight.step(b) for b in steps]
    second = interrupt_and_resume(lambda: Marthe(**hp), optim, steps, 3, steps_per_epoch=8, held_out=held)
    np.testing.assert_array_equal([second.step(b) for b in steps[3:]], straight_lrs[3:])
    np.testing.assert_array_equal(flat(second.model), flat(straight.model))


def test_without_held_out_data_binding_fails_with_a_readable_error():
    with pytest.raises(UserError, match="held-out"):
        ContractDriver(Marthe(), make_model(), OptimSettings(), steps_per_epoch=4, held_out=[])


@pytest.mark.parametrize("task", ["resnet18-cifar10", "lstm2-ptb"])
def test_in_the_training_loop_the_lr_starts_at_adatunes_or_the_base_lr_and_moves(task, data_dir):
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train

    result = train(Cell(task, "smoke", "marthe", overrides={"epochs": 1}))
    lrs = result.steps["lr"]
    assert result.status == "finished"
    assert lrs[0] == (0.01 if task.startswith("resnet") else 20.0) and lrs[1] != lrs[0]
    assert result.method_info["marthe_hyper_steps"] == len(lrs)
