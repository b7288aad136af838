"""HD and L4 against their official update rules on a small nonlinear model, no hand algebra.

Each official rule is re-derived here from the equations of the official code, as the user
of that code would run it (``loss.backward()``, optional ``clip_grad_norm_``, then the
optimiser's step):

* SGD-HD / SGDM-HD / SGDN-HD: ``hypergrad/sgd_hd.py`` of gbaydin/hypergradient-descent (one
  flat gradient with the L2 decay added, ``h = g . grad_prev`` with ``grad_prev = 0`` at
  first, LR moved before the momentum update, ``grad_prev`` = the applied direction);
* Adam-HD: ``hypergrad/adam_hd.py`` (per tensor, in order: ``h`` from the previous Adam
  direction with the previous bias corrections, the LR moved inside the loop);
* L4Adam: the PyTorch wrapper of the official repository (iovdin/l4-pytorch ``l4.py``) around
  ``torch.optim.Adam(betas=(0.9, 0.999), eps=1e-4, weight_decay=wd)``: the direction is the
  wrapped optimiser's step taken with the parameters set to zero;
* L4Mom: martius-lab/l4-optimizer ``L4/L4.py`` (``L4Mom``: bias-corrected time-10 moving
  average for both the direction and the gradient estimate), on the loss the user hands it.

Ours runs through the loop's ``start_run`` / ``train_step`` on a copy of the same model with
the same batches: Linear -> BatchNorm1d -> ReLU -> Linear, float64, train mode.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from support.least_squares import start_stub_run
from torch import Tensor, nn

from mlrsnet.harness.contract import OptimSettings, StepInfo
from mlrsnet.harness.registry import get_method
from mlrsnet.harness.step import train_step

STEPS = 6


def make_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()


def make_batches() -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(11)
    return [(torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g))
            for _ in range(STEPS)]


def l2(model: nn.Module) -> Tensor:
    return sum((p * p).sum() for p in model.parameters())


# -- the official rules, re-derived ---------------------------------------------------------

class OfficialSGDHD:
    def __init__(self, params, lr, hypergrad_lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.params, self.lr, self.beta = list(params), lr, hypergrad_lr
        self.momentum, self.nesterov, self.wd = momentum, nesterov, weight_decay
        self.grad_prev = None
        self.buf = None

    @torch.no_grad()
    def step(self, loss: Tensor) -> float:
        g = torch.cat([(p.grad + self.wd * p).reshape(-1) for p in self.params])
        if self.grad_prev is None:
            self.grad_prev = torch.zeros_like(g)
        self.lr = self.lr + self.beta * float(g @ self.grad_prev)
        if self.momentum:
            self.buf = g.clone() if self.buf is None else self.momentum * self.buf + g
            g = g + self.momentum * self.buf if self.nesterov else self.buf
        self.grad_prev = g
        offset = 0
        for p in self.params:
            p -= self.lr * g[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        return self.lr


class OfficialAdamHD:
    def __init__(self, params, lr, hypergrad_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params, self.lr, self.beta = list(params), lr, hypergrad_lr
        self.b1, self.b2 = betas
        self.eps, self.wd = eps, weight_decay
        self.state = [{"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)} for p in self.params]

    @torch.no_grad()
    def step(self, loss: Tensor) -> float:
        for p, s in zip(self.params, self.state, strict=True):
            g = p.grad + self.wd * p
            s["step"] += 1
            t = s["step"]
            if t > 1:
                previous = s["m"] / (s["v"].sqrt() + self.eps)
                h = float(g.reshape(-1) @ previous.reshape(-1)) * (1 - self.b2 ** (t - 1)) ** 0.5 \
                    / (1 - self.b1 ** (t - 1))
                self.lr = self.lr + self.beta * h
            s["m"] = self.b1 * s["m"] + (1 - self.b1) * g
            s["v"] = self.b2 * s["v"] + (1 - self.b2) * g * g
            step_size = self.lr * (1 - self.b2 ** t) ** 0.5 / (1 - self.b1 ** t)
            p -= step_size * s["m"] / (s["v"].sqrt() + self.eps)
        return self.lr


class OfficialL4Wrapper:
    """l4-pytorch: g_hat = bias-corrected EMA (0.9) of p.grad; v = minus the wrapped
    optimiser's step from w = 0; eta = alpha (L - gamma L_min) / (g_hat . v + eps)."""

    def __init__(self, optimizer, alpha=0.15, gamma=0.9, tau=1e-3, eps=1e-12):
        self.optimizer, self.alpha, self.gamma, self.tau, self.eps = optimizer, alpha, gamma, tau, eps
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.ema = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self.min_loss = None

    @torch.no_grad()
    def step(self, loss: Tensor) -> float:
        loss = float(loss)
        self.t += 1
        g_hat = []
        for k, p in enumerate(self.params):
            self.ema[k] = 0.9 * self.ema[k] + 0.1 * p.grad
            g_hat.append(self.ema[k] / (1 - 0.9 ** self.t))
        saved = [p.clone() for p in self.params]
        for p in self.params:
            p.zero_()
        self.optimizer.step()
        v = [-p.clone() for p in self.params]
        if self.min_loss is None:
            self.min_loss = 0.75 * loss
        lmin = min(self.min_loss, loss)
        eta = self.alpha * (loss - self.gamma * lmin) / (
            sum(float((a * b).sum()) for a, b in zip(g_hat, v, strict=True)) + self.eps)
        for p, w, d in zip(self.params, saved, v, strict=True):
            p.copy_(w - eta * d)
        self.min_loss = (1 + self.tau) * lmin
        return eta


class OfficialL4Mom:
    """L4/L4.py, L4Mom: both estimates the time-10 EMA of the gradient divided by
    1 - 0.9**(t+1); L_min = 0.75 L_0, then min(L_min, L) before the step, x (1 + 1/1000) after."""

    def __init__(self, params, fraction=0.15, minloss_factor=0.9, init_factor=0.75, forget_time=1000.0,
                 epsilon=1e-12):
        self.params = list(params)
        self.fraction, self.factor, self.init, self.rate = fraction, minloss_factor, init_factor, 1 + 1 / forget_time
        self.epsilon = epsilon
        self.ema = [torch.zeros_like(p) for p in self.params]
        self.global_step = 0
        self.min_loss = 0.0

    @torch.no_grad()
    def step(self, loss: Tensor) -> float:
        loss = float(loss)
        self.min_loss = self.init * loss if self.global_step == 0 else min(self.min_loss, loss)
        correction = 1 - 0.9 ** (self.global_step + 1)
        self.ema = [0.9 * e + 0.1 * p.grad for e, p in zip(self.ema, self.params, strict=True)]
        direction = [e / correction for e in self.ema]
        lr = self.fraction * (loss - self.factor * self.min_loss) / (
            sum(float((d * d).sum()) for d in direction) + self.epsilon)
        for p, d in zip(self.params, direction, strict=True):
            p -= lr * d
        self.min_loss *= self.rate
        self.global_step += 1
        return lr


# -- the two runs -----------------------------------------------------------------------------

def run_official(build, clip: float | None, loss_extra=None):
    model = make_model()
    optimizer = build(list(model.parameters()))
    lrs = []
    for x, y in make_batches():
        loss = F.cross_entropy(model(x), y)
        if loss_extra is not None:
            loss = loss + loss_extra(model)
        for p in model.parameters():
            p.grad = None
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        lrs.append(optimizer.step(loss.detach()))
    return lrs, model


def run_ours(name: str, hparams: dict, optim: OptimSettings):
    model = make_model()
    method = get_method(name)(**hparams)
    run = start_stub_run(method, model, optim, steps_per_epoch=STEPS, task_name="toy", num_outputs=3)
    lrs = []
    for s, (x, y) in enumerate(make_batches()):
        info = StepInfo(step=s, epoch=0, index_in_epoch=s, loss=F.cross_entropy(model(x), y))
        result = train_step(method, info, run.params, run.optimizer, optim.clip_grad_norm)
        assert not result.diverged
        lrs.append(result.lr)
    return lrs, model


def assert_same(ours, official):
    (our_lrs, our_model), (their_lrs, their_model) = ours, official
    assert our_lrs == pytest.approx(their_lrs, rel=1e-9, abs=1e-12)
    for a, b in zip(our_model.state_dict().values(), their_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    assert len(set(our_lrs)) == len(our_lrs)  # the LR moved at every step


CLIPS = [None, 0.5]


@pytest.mark.parametrize("clip", CLIPS, ids=["no-clip", "clip"])
@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)],
                         ids=["sgd-hd", "sgdm-hd", "sgdn-hd"])
def test_hd_is_the_official_sgd_hd(momentum, nesterov, clip):
    optim = OptimSettings(momentum=momentum, nesterov=nesterov, weight_decay=1e-2, clip_grad_norm=clip)
    ours = run_ours("hd", {"lr": 0.05, "hyper_lr": 0.05}, optim)
    official = run_official(lambda ps: OfficialSGDHD(ps, 0.05, 0.05, momentum, nesterov, 1e-2), clip)
    assert_same(ours, official)


@pytest.mark.parametrize("clip", CLIPS, ids=["no-clip", "clip"])
def test_hd_adam_is_the_official_adam_hd(clip):
    optim = OptimSettings(weight_decay=1e-2, clip_grad_norm=clip)
    ours = run_ours("hd-adam", {"lr": 0.01, "hyper_lr": 1e-3}, optim)
    official = run_official(lambda ps: OfficialAdamHD(ps, 0.01, 1e-3, weight_decay=1e-2), clip)
    assert_same(ours, official)


@pytest.mark.parametrize("clip", CLIPS, ids=["no-clip", "clip"])
def test_l4_adam_is_the_official_pytorch_wrapper_around_adam(clip):
    # the wrapped Adam's weight decay is cancelled by the wrapper: ours by default ignores it too
    optim = OptimSettings(weight_decay=1e-2, clip_grad_norm=clip)
    ours = run_ours("l4-adam", {}, optim)
    official = run_official(lambda ps: OfficialL4Wrapper(
        torch.optim.Adam(ps, lr=1.0, betas=(0.9, 0.999), eps=1e-4, weight_decay=1e-2)), clip)
    assert_same(ours, official)


@pytest.mark.parametrize(("mode", "clip"), [("ignored", None), ("ignored", 0.5), ("objective", None)])
def test_l4_mom_is_the_official_tf_l4mom(mode, clip):
    # "objective": the TF user adds the L2 penalty to the loss it hands to L4.  (Not with a
    # clip: TF would clip the penalty's gradient too, where ours adds it after the loop's clip,
    # as the task's SGD does.)
    optim = OptimSettings(weight_decay=1e-2, clip_grad_norm=clip)
    ours = run_ours("l4-mom", {"weight_decay_mode": mode}, optim)
    extra = (lambda model: 0.5 * 1e-2 * l2(model)) if mode == "objective" else None
    official = run_official(lambda ps: OfficialL4Mom(ps), clip, loss_extra=extra)
    assert_same(ours, official)


def test_the_cross_check_sees_what_it_checks():
    """A wrong rule is caught: SGDN-HD's official run differs from SGDM-HD, and the cancelled
    weight decay of the L4 wrapper differs from the objective rule."""
    optim = OptimSettings(momentum=0.9, weight_decay=1e-2)
    ours_lrs, _ = run_ours("hd", {"lr": 0.05, "hyper_lr": 0.05}, optim)
    nesterov_lrs, _ = run_official(lambda ps: OfficialSGDHD(ps, 0.05, 0.05, 0.9, True, 1e-2), None)
    assert ours_lrs != pytest.approx(nesterov_lrs, rel=1e-6)
    l4_lrs, _ = run_ours("l4-adam", {"weight_decay_mode": "objective"}, OptimSettings(weight_decay=1e-2))
    wrapper_lrs, _ = run_official(lambda ps: OfficialL4Wrapper(
        torch.optim.Adam(ps, lr=1.0, betas=(0.9, 0.999), eps=1e-4, weight_decay=1e-2)), None)
    assert l4_lrs != pytest.approx(wrapper_lrs, rel=1e-6)


def test_the_model_is_nonlinear_and_in_train_mode():
    model = copy.deepcopy(make_model())
    assert model.training and any(isinstance(m, nn.BatchNorm1d) for m in model)
