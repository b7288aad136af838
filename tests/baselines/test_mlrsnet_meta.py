"""Meta-training (method ``mlrsnet``): the look-ahead direction is SGD's own, the
hypergradient is exact, meta updates happen every ``t_val`` steps, checkpoints come out in
the released layout, and a resumed run continues identically.

The toy run is a two-layer MLP on fixed synthetic batches (this checks arithmetic, not a
dataset), driven through the loop's own set-up and step functions (``mlrsnet.harness.step``).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mlrsnet.baselines._lookahead import default_t_val, lookahead_params, meta_steps_per_epoch, sgd_directions
from mlrsnet.baselines.meta_sgd import MetaSGD
from mlrsnet.baselines.mlrsnet_meta import MLRSNetMeta, default_hyper_lr
from support.least_squares import start_stub_run
from torch import Tensor, nn
from torch.func import functional_call

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import OptimSettings, RunContext, StepInfo
from mlrsnet.harness.registry import get_method
from mlrsnet.harness.step import compute_gradients, train_step
from mlrsnet.snet.checkpoint_sets import resolve_checkpoints
from mlrsnet.snet.gamma import TaskScale
from mlrsnet.snet.net import MLRSNet, load_mlrsnet

CLIP = 0.5


class CountingBatches:
    """Endless fixed meta batches that count how many were drawn."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        self.cycle: Iterator[tuple[Tensor, Tensor]] = itertools.cycle(batches)
        self.drawn = 0

    def __iter__(self) -> CountingBatches:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        self.drawn += 1
        return next(self.cycle)


def make_batches(n: int, seed: int, dtype: torch.dtype = torch.float64) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 4, generator=g, dtype=dtype), torch.randint(0, 3, (16,), generator=g))
            for _ in range(n)]


def toy_run(optim: OptimSettings, *, dtype: torch.dtype = torch.float64, steps_per_epoch: int = 4,
            epochs: int = 3, artifact_dir: Path | None = None, method: type | None = None,
            kind: str = "image", **hparams: object) -> tuple[MLRSNetMeta, RunContext, CountingBatches]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    meta_cls = method or MLRSNetMeta
    m = meta_cls(**hparams)
    meta = CountingBatches(make_batches(3, seed=1, dtype=dtype))

    def meta_loss(params: dict[str, Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(functional_call(model, params, (batch[0],)), batch[1])

    run = start_stub_run(m, model, optim, steps_per_epoch=steps_per_epoch, epochs=epochs, task_name="toy",
                         num_outputs=3, held_out_batches=meta, held_out_loss=meta_loss,
                         artifact_dir=str(artifact_dir) if artifact_dir else None, kind=kind)
    return m, run, meta


def forward_backward(method: MLRSNetMeta, run: RunContext, batch: tuple[Tensor, Tensor]) -> Tensor:
    """A step up to just before ``lr()`` (forward, then the step's own gradient part)."""
    loss = F.cross_entropy(run.model(batch[0]), batch[1])
    compute_gradients(method, loss, run.params, run.optimizer, run.task.optim.clip_grad_norm)
    return loss


def loop(method: MLRSNetMeta, run: RunContext, steps: range) -> list[float]:
    """The training loop's steps (``train_step``) and epoch ends for ``steps`` (global step
    indices; the batch of a step depends only on its index, so a resumed loop sees the same
    batches)."""
    lrs = []
    for s in steps:
        x, y = make_batches(1, seed=1000 + s, dtype=run.params[0].dtype)[0]
        loss = F.cross_entropy(run.model(x), y)
        info = StepInfo(step=s, epoch=s // run.horizon.steps_per_epoch, index_in_epoch=s % run.horizon.steps_per_epoch, loss=loss)
        result = train_step(method, info, run.params, run.optimizer, run.task.optim.clip_grad_norm)
        assert not result.diverged
        lrs.append(result.lr)
        if (s + 1) % run.horizon.steps_per_epoch == 0:
            method.end_epoch(s // run.horizon.steps_per_epoch, {})
    return lrs


SGD_SETTINGS = [
    OptimSettings(),
    OptimSettings(weight_decay=5e-4),
    OptimSettings(momentum=0.9, weight_decay=5e-4),
    OptimSettings(momentum=0.9, weight_decay=1e-5, nesterov=True),
    OptimSettings(momentum=0.0, weight_decay=5e-6, clip_grad_norm=CLIP),
]


@pytest.mark.parametrize("optim", SGD_SETTINGS, ids=["plain", "wd", "momentum", "nesterov", "clip"])
def test_the_lookahead_direction_is_the_step_sgd_takes(optim: OptimSettings) -> None:
    method, run, _ = toy_run(optim)
    for batch in make_batches(2, seed=3):  # two steps so momentum buffers exist
        forward_backward(method, run, batch)
        run.optimizer.step()
    forward_backward(method, run, make_batches(1, seed=4)[0])
    directions = sgd_directions(run.optimizer)
    before = [p.detach().clone() for p in run.params]
    for group in run.optimizer.param_groups:
        group["lr"] = 0.37
    run.optimizer.step()
    for p, old in zip(run.params, before, strict=True):
        torch.testing.assert_close(p.detach(), old - 0.37 * directions[p], rtol=0, atol=1e-13)


def test_dampening_and_maximize_are_followed_as_sgd_applies_them() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.01, maximize=True)
    for g in ([0.5, 0.25], [-1.0, 2.0]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        d = sgd_directions(opt)[p]
        old = p.detach().clone()
        opt.step()
        torch.testing.assert_close(p.detach(), old - 0.1 * d, rtol=0, atol=1e-14)


def test_the_lookahead_leaves_weights_and_momentum_buffers_untouched() -> None:
    method, run, _ = toy_run(OptimSettings(momentum=0.9, weight_decay=5e-4), t_val=1)
    loop(method, run, range(0, 2))
    forward_backward(method, run, make_batches(1, seed=9)[0])
    weights = [p.detach().clone() for p in run.params]
    buffers = [run.optimizer.state[p]["momentum_buffer"].clone() for p in run.params]
    method.lookahead_backward(torch.tensor(0.1, dtype=torch.float64, requires_grad=True))
    for p, w, b in zip(run.params, weights, buffers, strict=True):
        assert torch.equal(p.detach(), w)
        assert torch.equal(run.optimizer.state[p]["momentum_buffer"], b)


@pytest.mark.parametrize("optim", SGD_SETTINGS[2:], ids=["momentum", "nesterov", "clip"])
def test_the_hypergradient_matches_finite_differences_in_float64(optim: OptimSettings) -> None:
    method, run, meta = toy_run(optim, t_val=3)
    loop(method, run, range(0, 2))  # two ordinary steps: momentum buffers and LSTM state exist
    assert method.meta_updates == 0
    loss = forward_backward(method, run, make_batches(1, seed=11)[0])

    # Reference look-ahead from an independent copy of the optimiser, stepped with lr = 1:
    # w - p_after is then the direction SGD applies (clipped gradient, wd, momentum).
    model_copy = copy.deepcopy(run.model)
    for p_copy, p in zip(model_copy.parameters(), run.params, strict=True):
        p_copy.grad = p.grad.clone()
    opt_copy = torch.optim.SGD(model_copy.parameters(), lr=1.0, momentum=optim.momentum,
                               weight_decay=optim.weight_decay, nesterov=optim.nesterov)
    # deepcopy: load_state_dict may share the buffers, and the copy's step mutates them in place
    opt_copy.load_state_dict(copy.deepcopy(run.optimizer.state_dict()))
    for group in opt_copy.param_groups:
        group["lr"] = 1.0
    opt_copy.step()
    d_ref = {n: p.detach() - q.detach() for (n, p), q in
             zip(run.model.named_parameters(), model_copy.parameters(), strict=True)}
    w = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    meta_batch = make_batches(3, seed=1)[meta.drawn % 3]

    phi0 = {k: v.clone() for k, v in method.net.state_dict().items()}
    state0 = method.state
    gamma = method.gamma
    x = TaskScale("image", 3).net_input(float(loss.detach()))
    probe = MLRSNet().double()

    def meta_objective(phi: dict[str, Tensor]) -> float:
        probe.load_state_dict(phi)
        with torch.no_grad():
            a, _ = probe(x, state0)
            lr = gamma * a.reshape(())
            params = {n: w[n] - lr * d_ref[n] for n in w}
            return float(run.held_out.loss(params, meta_batch))

    info = StepInfo(step=2, epoch=0, index_in_epoch=2, loss=loss)
    method.lr(info)  # a meta step: phi.grad now holds the hypergradient, phi has moved
    assert method.meta_updates == 1
    grad = {n: p.grad.clone() for n, p in method.net.named_parameters()}
    flat = torch.cat([g.flatten() for g in grad.values()])
    assert float(flat.abs().max()) > 0

    g = torch.Generator().manual_seed(0)
    eps = 1e-6
    for _ in range(4):
        v = {k: torch.randn(t.shape, generator=g, dtype=torch.float64) for k, t in phi0.items()}
        plus = meta_objective({k: phi0[k] + eps * v[k] for k in phi0})
        minus = meta_objective({k: phi0[k] - eps * v[k] for k in phi0})
        fd = (plus - minus) / (2 * eps)
        exact = sum(float((grad[k] * v[k]).sum()) for k in phi0)
        assert abs(fd - exact) <= 1e-3 * abs(exact), (fd, exact)


def test_the_returned_lr_uses_the_updated_network_on_the_same_state() -> None:
    method, run, _ = toy_run(OptimSettings(), t_val=1)
    loss = forward_backward(method, run, make_batches(1, seed=2)[0])
    state0 = method.state
    lr = method.lr(StepInfo(step=0, epoch=0, index_in_epoch=0, loss=loss))
    with torch.no_grad():
        a, state1 = method.net(float(loss.detach()), state0)
    assert lr == pytest.approx(method.gamma * float(a), rel=1e-12)
    assert torch.equal(method.state.h, state1.h)
    assert method.gamma == pytest.approx(TaskScale("image", 3).gamma(float(loss.detach())))


def meta_update_history(method: MLRSNetMeta, run: RunContext, steps: int) -> list[bool]:
    """For each step of the loop, whether MLR-SNet's parameters moved (a meta update)."""
    history = []
    for s in range(steps):
        before = [p.detach().clone() for p in method.net.parameters()]
        loop(method, run, range(s, s + 1))
        history.append(any(not torch.equal(b, p) for b, p in zip(before, method.net.parameters(), strict=True)))
    return history


@pytest.mark.parametrize("cls", [MLRSNetMeta, MetaSGD], ids=["mlrsnet", "meta-sgd"])
def test_meta_updates_follow_the_image_scripts_rule_on_image_runs(cls: type) -> None:
    method, run, meta = toy_run(OptimSettings(), t_val=3, steps_per_epoch=7, epochs=2, method=cls)
    assert method.meta_step_rule == "(i+1) % t_val == 0"
    if cls is MLRSNetMeta:
        # (index_in_epoch + 1) % 3 == 0 -> in-epoch indices 2 and 5 of each 7-step epoch
        assert meta_update_history(method, run, 14) == [i % 7 in (2, 5) for i in range(14)]
    else:
        loop(method, run, range(14))
    assert method.meta_updates == meta.drawn == 4


@pytest.mark.parametrize("cls", [MLRSNetMeta, MetaSGD], ids=["mlrsnet", "meta-sgd"])
def test_meta_updates_follow_the_language_model_scripts_rule_on_text_runs(cls: type) -> None:
    method, run, meta = toy_run(OptimSettings(clip_grad_norm=CLIP), t_val=3, steps_per_epoch=7, epochs=2,
                                method=cls, kind="text")
    assert method.meta_step_rule == "i % t_val == 0"
    if cls is MLRSNetMeta:
        # index_in_epoch % 3 == 0 -> in-epoch windows 0, 3 and 6: the first step of every epoch
        # (as the official script's step = (i + 1) // 35 at 0, 300, 600 of a PTB epoch)
        assert meta_update_history(method, run, 14) == [i % 7 in (0, 3, 6) for i in range(14)]
    else:
        loop(method, run, range(14))
    assert method.meta_updates == meta.drawn == 6
    assert method.extra_info()["meta_step_rule"] == "i % t_val == 0"


def test_t_val_defaults_to_300_at_paper_scale_and_about_200_updates_otherwise() -> None:
    assert default_t_val("paper", 383, 200) == 300
    assert default_t_val("mini", 32, 6) == 1
    assert default_t_val("mini", 100, 40) == 20
    assert default_t_val("mini", 10, 1000) == 10  # never rarer than once per epoch
    method, _, _ = toy_run(OptimSettings(), steps_per_epoch=4, epochs=3)
    assert method.t_val == 1


def test_hyper_lr_is_the_official_1e_3_at_every_scale_by_default() -> None:
    """Both official meta-training scripts take Adam steps of 1e-3 (``--lr`` default 0.001)."""
    assert default_hyper_lr("paper", 200) == 1e-3 == default_hyper_lr("reduced", 160) == default_hyper_lr("reduced", 13)
    method, _, _ = toy_run(OptimSettings(), steps_per_epoch=4, epochs=3)
    info = method.extra_info()
    assert (info["t_val"], info["planned_meta_updates"]) == (1, 12)
    assert (info["mlrsnet_hyper_lr"], info["mlrsnet_hyper_lr_rule"]) == (1e-3, "official")
    assert method.meta_optimizer.param_groups[0]["lr"] == 1e-3


def test_the_adam_path_rule_spreads_twice_the_official_path_over_a_reduced_runs_updates() -> None:
    assert default_hyper_lr("paper", 200, "adam-path") == 1e-3 == default_hyper_lr("paper", 13, "adam-path")
    assert default_hyper_lr("reduced", 160, "adam-path") == pytest.approx(2.5e-3)  # ResNet-18 mini: every step
    assert default_hyper_lr("reduced", 400, "adam-path") == pytest.approx(1e-3)
    assert meta_steps_per_epoch("(i+1) % t_val == 0", 3, 7) == 2  # i = 2, 5
    assert meta_steps_per_epoch("i % t_val == 0", 3, 7) == 3  # i = 0, 3, 6
    method, _, _ = toy_run(OptimSettings(), steps_per_epoch=4, epochs=3, hyper_lr_rule="adam-path")
    info = method.extra_info()
    assert info["mlrsnet_hyper_lr"] == pytest.approx(0.4 / 12) and info["mlrsnet_hyper_lr_rule"] == "adam-path"
    assert method.meta_optimizer.param_groups[0]["lr"] == info["mlrsnet_hyper_lr"]
    text, _, _ = toy_run(OptimSettings(), steps_per_epoch=7, epochs=2, kind="text", t_val=3)
    assert text.extra_info()["planned_meta_updates"] == 6
    forced, _, _ = toy_run(OptimSettings(), hyper_lr=2e-3, hyper_lr_rule="adam-path")
    assert (forced.extra_info()["mlrsnet_hyper_lr"], forced.extra_info()["mlrsnet_hyper_lr_rule"]) == (2e-3, "explicit")


def test_the_bottleneck_is_the_official_scripts_of_the_tasks_kind() -> None:
    """Image script: hidden_size // 2 = 25 (11,776 parameters, the released shape); language
    models: hidden_size = 50 (23,101); either can be forced."""
    image, _, _ = toy_run(OptimSettings())
    text, _, _ = toy_run(OptimSettings(), kind="text")
    forced, _, _ = toy_run(OptimSettings(), kind="text", bottleneck=25)
    counts = [m.extra_info()["mlrsnet_parameters"] for m in (image, text, forced)]
    widths = [m.extra_info()["mlrsnet_bottleneck"] for m in (image, text, forced)]
    assert counts == [11_776, 23_101, 11_776] and widths == [25, 50, 25]
    # by hand: i2h Linear(1, b) + Linear(b, 200), h2h Linear(50, b) + Linear(b, 200), head Linear(50, 1)
    assert counts[0] == (1 * 25 + 25 + 25 * 200 + 200) + (50 * 25 + 25 + 25 * 200 + 200) + 51
    assert counts[1] == (1 * 50 + 50 + 50 * 200 + 200) + (50 * 50 + 50 + 50 * 200 + 200) + 51


def test_meta_training_needs_held_out_data() -> None:
    method = MLRSNetMeta()
    _, run, _ = toy_run(OptimSettings())
    run.held_out = None
    with pytest.raises(UserError, match="held-out"):
        method.bind(run)


def test_every_epoch_writes_a_checkpoint_in_the_released_layout_and_a_manifest(tmp_path: Path) -> None:
    method, run, _ = toy_run(OptimSettings(), artifact_dir=tmp_path, steps_per_epoch=3, epochs=3,
                             dtype=torch.float32, t_val=2)
    loop(method, run, range(0, 9))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"] == {"1": "mlr_snet_1.pth", "2": "mlr_snet_2.pth", "3": "mlr_snet_3.pth"}
    for key, value in {"task": "toy", "scale": "reduced", "seed": 0, "cell": "meta-train",
                       "epochs": 3, "completed_epochs": 3, "t_val": 2, "meta_updates": 3}.items():
        assert manifest[key] == value
    last = load_mlrsnet(tmp_path / "mlr_snet_3.pth")
    for key, value in method.net.state_dict().items():
        assert torch.equal(last.state_dict()[key], value)
    first = torch.load(tmp_path / "mlr_snet_1.pth", weights_only=True)
    assert not torch.equal(first["layer3.weight"], last.state_dict()["layer3.weight"])
    # the folder is a checkpoint set that the transfer method can use: first, middle, last
    assert resolve_checkpoints(str(tmp_path)).stages == (1, 1, 3)


def test_a_resumed_run_continues_exactly_as_an_uninterrupted_one() -> None:
    optim = OptimSettings(momentum=0.9, weight_decay=5e-4)
    straight, run_a, _ = toy_run(optim, t_val=2)
    expected = loop(straight, run_a, range(0, 12))

    first, run_b, meta_b = toy_run(optim, t_val=2)
    got = loop(first, run_b, range(0, 6))
    saved = {"method": copy.deepcopy(first.state_dict()), "model": copy.deepcopy(run_b.model.state_dict()),
             "optimizer": copy.deepcopy(run_b.optimizer.state_dict()), "drawn": meta_b.drawn}

    resumed, run_c, meta_c = toy_run(optim, t_val=2)
    run_c.model.load_state_dict(saved["model"])
    run_c.optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["method"])
    for _ in range(saved["drawn"]):
        next(meta_c)
    got += loop(resumed, run_c, range(6, 12))
    assert got == expected


def test_extra_info_records_the_cell_convention_and_parameter_count() -> None:
    method, _, _ = toy_run(OptimSettings(), gate_convention="meta-test-script")
    info = method.extra_info()
    assert info["mlrsnet_cell"] == "meta-test-script"
    assert info["meta_parameters"] == info["mlrsnet_parameters"] == 11_776


def test_the_method_is_discovered_under_its_name() -> None:
    assert get_method("mlrsnet") is MLRSNetMeta


def test_lookahead_params_depend_on_the_lr_only() -> None:
    w = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    frozen = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    d = torch.tensor([0.5, -1.0], dtype=torch.float64)
    lr = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    out = lookahead_params([("w", w), ("frozen", frozen)], {w: d}, lr)
    torch.testing.assert_close(out["w"], torch.tensor([0.9, 2.2], dtype=torch.float64))
    assert torch.equal(out["frozen"], frozen.detach())
    out["w"].sum().backward()
    assert float(lr.grad) == pytest.approx(0.5)
    assert w.grad is None


def test_the_initialisation_is_the_official_scripts_unless_forced_and_is_recorded() -> None:
    image_default, _, _ = toy_run(OptimSettings())
    forced, _, _ = toy_run(OptimSettings(), init="uniform-0.1")
    assert image_default.extra_info()["mlrsnet_init"] == "torch-default"
    assert forced.extra_info()["mlrsnet_init"] == "uniform-0.1"
    first_layer = [float(m.net.layer1.fc_i2h[0].weight.abs().max()) for m in (image_default, forced)]
    assert first_layer[0] > 0.1 >= first_layer[1]
    with pytest.raises(UserError, match="uniform-0.1"):
        MLRSNetMeta(init="zeros")


@pytest.mark.parametrize("task", ["resnet18-cifar10", "lstm2-ptb"])
def test_gammas_starting_loss_is_a_full_eval_pass_unless_the_first_batch_is_asked_for(task, data_dir) -> None:
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.harness.loop import train
    from mlrsnet.snet.gamma import TaskScale

    full = train(Cell(task, "smoke", "mlrsnet", overrides={"epochs": 1}))
    first = train(Cell(task, "smoke", "mlrsnet", {"initial_loss_from": "first-batch"}, overrides={"epochs": 1}))
    info, info_first = full.method_info, first.method_info
    assert info["mlrsnet_initial_loss_from"] == "train-pass" and info["mlrsnet_train_pass_s"] > 0
    assert info_first["mlrsnet_initial_loss_from"] == "first-batch"
    # the same initial weights (same seed): the first-batch rule reads the trace's first loss,
    # the full pass a different (eval-mode, whole-split) mean
    assert info_first["mlrsnet_initial_loss"] == pytest.approx(first.steps["loss"][0], rel=1e-6)
    assert full.steps["loss"][0] == first.steps["loss"][0]
    if task.startswith("resnet"):  # eval-mode BatchNorm at initialisation: a different loss
        assert info["mlrsnet_initial_loss"] != pytest.approx(full.steps["loss"][0], rel=1e-3)
    else:  # an untrained language model predicts about uniformly: ln(V)
        assert info["mlrsnet_initial_loss"] == pytest.approx(math.log(10_000), abs=0.1)
    outputs = 10 if task.startswith("resnet") else 10_000
    scale = TaskScale.of(**({"num_classes": outputs} if task.startswith("resnet") else {"vocab_size": outputs}))
    assert info["mlrsnet_gamma"] == pytest.approx(scale.gamma(info["mlrsnet_initial_loss"]))
