"""The step, written once (``mlrsnet.harness.step``): the exact order of the hooks, clipping
before ``lr()``, the direction hook's tensors being what moves the parameters (and methods
never writing ``p.grad`` themselves), what a non-finite loss or LR stops, and the run set-up.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from support.least_squares import (
    ContractDriver,
    least_squares_batches,
    lsq_loss,
    make_model,
    start_stub_run,
)
from torch import Tensor, nn

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import (
    HeldOut,
    Horizon,
    Method,
    OptimSettings,
    StepInfo,
    TaskFacts,
    stateless_sgd,
)
from mlrsnet.harness.step import StepResult, start_run, train_step


class Recording(Method):
    """Records every hook call (and what it saw) into ``self.calls``."""

    name = "recording"
    defaults = {"lr": 0.1}

    def __init__(self, direction: list[Tensor] | None = None, lr_value: float = 0.1, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.calls: list[str] = []
        self.grad_norm_in_lr: float | None = None
        self._direction = direction
        self._lr_value = lr_value

    def build_optimizer(self, params, optim, initial_lr=0.0):
        if self._direction is not None:
            return stateless_sgd(params, initial_lr)
        return super().build_optimizer(params, optim, initial_lr)

    def bind(self, run):
        self.calls.append("bind")
        super().bind(run)

    def backward(self, loss, params):
        self.calls.append("backward")
        super().backward(loss, params)

    def lr(self, step):
        self.calls.append("lr")
        grads = [p.grad for p in self.run.params]
        self.grad_norm_in_lr = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        return self._lr_value

    def direction(self, step):
        self.calls.append("direction")
        return self._direction

    def after_step(self, step):
        self.calls.append("after_step")


def recording_run(method: Recording, optim: OptimSettings | None = None):
    run = start_stub_run(method, make_model(), optim or OptimSettings(), steps_per_epoch=4)
    calls = method.calls
    original_step, original_zero = run.optimizer.step, run.optimizer.zero_grad

    def step(*args: Any, **kwargs: Any) -> Any:
        calls.append("optimizer.step")
        return original_step(*args, **kwargs)

    def zero_grad(*args: Any, **kwargs: Any) -> Any:
        calls.append("zero_grad")
        return original_zero(*args, **kwargs)

    run.optimizer.step, run.optimizer.zero_grad = step, zero_grad
    return run


def one_step(method: Method, run, batch, clip: float | None = None, step: int = 0) -> StepResult:
    loss = lsq_loss(run.model, batch)
    info = StepInfo(step=step, epoch=0, index_in_epoch=step, loss=loss)
    return train_step(method, info, run.params, run.optimizer, clip)


def test_the_hooks_run_in_the_contracts_order() -> None:
    method = Recording()
    run = recording_run(method)
    assert method.calls == ["bind"]
    batch = least_squares_batches(1)[0]
    result = one_step(method, run, batch)
    assert method.calls == ["bind", "zero_grad", "backward", "lr", "direction", "optimizer.step", "after_step"]
    assert result == StepResult(lr=0.1, loss=float(lsq_loss(make_model(), batch).detach()), diverged=False)
    assert [g["lr"] for g in run.optimizer.param_groups] == [0.1]


def test_clipping_happens_before_lr_sees_the_gradient() -> None:
    batch = least_squares_batches(1)[0]
    unclipped = Recording()
    one_step(unclipped, recording_run(unclipped), batch)
    clipped = Recording()
    one_step(clipped, recording_run(clipped), batch, clip=0.1)
    assert unclipped.grad_norm_in_lr > 0.5  # clipping really has something to do
    assert clipped.grad_norm_in_lr == pytest.approx(0.1, rel=1e-5)


def test_the_direction_hooks_tensors_are_what_moves_the_parameters() -> None:
    direction = [torch.tensor([[0.5, -2.0]], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)]
    given = [d.clone() for d in direction]
    method = Recording(direction=direction, lr_value=0.25)
    run = recording_run(method, OptimSettings(momentum=0.9, weight_decay=0.1))  # ignored: stateless SGD
    before = [p.detach().clone() for p in run.params]
    one_step(method, run, least_squares_batches(1)[0], clip=0.1)
    for p, old, d, g in zip(run.params, before, direction, given, strict=True):
        assert torch.equal(p.detach(), old - 0.25 * g)
        assert torch.equal(p.grad, g) and p.grad is not d  # the harness wrote a copy ...
        assert torch.equal(d, g)  # ... and left the method's tensors as they were


def test_without_a_direction_the_optimizer_takes_its_own_step() -> None:
    optim = OptimSettings(momentum=0.9, weight_decay=0.1, nesterov=True)
    batches = least_squares_batches(3)
    method = Recording(lr_value=0.05)
    run = start_stub_run(method, make_model(), optim, steps_per_epoch=4)
    reference_model = make_model()
    reference = torch.optim.SGD(reference_model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.1,
                                nesterov=True)
    for s, batch in enumerate(batches):
        one_step(method, run, batch, step=s)
        reference.zero_grad()
        lsq_loss(reference_model, batch).backward()
        reference.step()
    for p, q in zip(run.params, reference_model.parameters(), strict=True):
        assert torch.equal(p.detach(), q.detach())


def test_a_direction_needs_the_stateless_sgd() -> None:
    class Wrong(Recording):
        def build_optimizer(self, params, optim, initial_lr=0.0):
            return Method.build_optimizer(self, params, optim, initial_lr)

    method = Wrong(direction=[torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    run = start_stub_run(method, make_model(), OptimSettings(momentum=0.9), steps_per_epoch=4)
    with pytest.raises(RuntimeError, match="stateless_sgd"):
        one_step(method, run, least_squares_batches(1)[0])
    short = Recording(direction=[torch.zeros(1, 2, dtype=torch.float64)])
    run = start_stub_run(short, make_model(), OptimSettings(), steps_per_epoch=4)
    with pytest.raises(RuntimeError, match="1 tensors for 2 parameters"):
        one_step(short, run, least_squares_batches(1)[0])


def test_a_non_finite_loss_stops_before_the_backward_pass() -> None:
    method = Recording()
    run = recording_run(method)
    before = [p.detach().clone() for p in run.params]
    loss = lsq_loss(run.model, least_squares_batches(1)[0]) * float("inf")
    result = train_step(method, StepInfo(0, 0, 0, loss), run.params, run.optimizer, None)
    assert result.diverged and result.loss == float("inf") and result.lr != result.lr  # nan
    assert method.calls == ["bind", "zero_grad"]
    assert all(torch.equal(p.detach(), b) for p, b in zip(run.params, before, strict=True))


@pytest.mark.parametrize("bad_lr", [float("nan"), float("inf")])
def test_a_non_finite_lr_stops_before_the_parameters_move(bad_lr: float) -> None:
    method = Recording(lr_value=bad_lr)
    run = recording_run(method)
    before = [p.detach().clone() for p in run.params]
    result = one_step(method, run, least_squares_batches(1)[0])
    assert result.diverged and (result.lr == bad_lr or bad_lr != bad_lr)
    assert method.calls == ["bind", "zero_grad", "backward", "lr"]
    assert all(torch.equal(p.detach(), b) for p, b in zip(run.params, before, strict=True))


@pytest.mark.parametrize("name", ["hd", "l4-mom", "l4-adam", "rtho"])
def test_methods_that_own_their_direction_never_write_p_grad(name: str) -> None:
    from mlrsnet.harness.registry import get_method

    optim = OptimSettings(momentum=0.9, weight_decay=1e-2, clip_grad_norm=0.5)
    method = get_method(name)(update_every=1) if name == "rtho" else get_method(name)()
    driver = ContractDriver(method, make_model(), optim, steps_per_epoch=8,
                            held_out=least_squares_batches(2, seed=3))
    lr_hook, direction_hook = method.lr, method.direction
    seen: dict[str, list[Tensor]] = {}
    checked = []

    def lr(info: StepInfo) -> float:
        seen["grads"] = [p.grad for p in driver.params]
        seen["values"] = [p.grad.clone() for p in driver.params]
        return lr_hook(info)

    def direction(info: StepInfo) -> list[Tensor]:
        d = direction_hook(info)
        assert [p.grad for p in driver.params] == seen["grads"]  # the same tensors ...
        assert all(torch.equal(p.grad, v) for p, v in zip(driver.params, seen["values"], strict=True))  # untouched
        assert len(d) == len(driver.params) and not any(x is g for x, g in zip(d, seen["grads"], strict=True))
        checked.append(info.step)
        return d

    method.lr, method.direction = lr, direction  # instance attributes: train_step calls these
    for batch in least_squares_batches(3):  # state (buffers, tangents) exists from step 2 on
        driver.step(batch)
    assert checked == [0, 1, 2]


def test_start_run_builds_the_optimizer_binds_once_and_describes_the_run() -> None:
    class Task:
        name, kind, optim, base_lr = "toy-text", "text", OptimSettings(momentum=0.5), 20.0

    class Workload:
        steps_per_epoch, num_outputs = 7, 33

        def __init__(self) -> None:
            self.generators: list[torch.Generator] = []

        def held_out(self, model, generator):
            self.generators.append(generator)
            return HeldOut(itertools.repeat(None), lambda params, batch: "loss-of-" + type(model).__name__)

    class ReadsHeldOut(Recording):
        uses_held_out = True

    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    method, workload = ReadsHeldOut(), Workload()
    run = start_run(method, model, task=Task, workload=workload, scale="reduced", epochs=2, seed=5,
                    device=torch.device("cpu"), artifact_dir="somewhere")
    assert method.calls == ["bind"] and method.run is run
    assert run.param_names == ["0.bias", "1.weight", "1.bias"]
    assert [id(p) for p in run.params] == [id(model[0].bias), id(model[1].weight), id(model[1].bias)]
    assert run.optimizer.param_groups[0]["params"] == run.params
    assert run.optimizer.param_groups[0]["momentum"] == 0.5
    assert run.task == TaskFacts("toy-text", "text", 33, 20.0, OptimSettings(momentum=0.5))
    assert run.horizon == Horizon(steps_per_epoch=7, epochs=2) and run.horizon.total_steps == 14
    assert (run.scale, run.seed, run.artifact_dir) == ("reduced", 5, "somewhere")
    assert run.held_out.loss({}, None) == "loss-of-Sequential"
    # the held-out batches are drawn with a generator seeded seed + 1 unless one is given
    assert torch.equal(workload.generators[0].get_state(), torch.Generator().manual_seed(6).get_state())
    mine = torch.Generator().manual_seed(99)
    again = start_run(ReadsHeldOut(), model, task=Task, workload=workload, scale="paper", epochs=2, seed=5,
                      device=torch.device("cpu"), meta_generator=mine, steps_per_epoch=383)
    assert workload.generators[1] is mine and again.horizon.steps_per_epoch == 383 and again.scale == "paper"


def test_a_method_that_reads_no_held_out_data_is_given_none() -> None:
    class Workload:
        steps_per_epoch, num_outputs = 3, 10

        def held_out(self, model, generator):
            raise AssertionError("built for a method that does not read held-out data")

    class Task:
        name, kind, optim, base_lr = "toy", "image", OptimSettings(), 0.1

    run = start_run(Recording(), nn.Linear(2, 1), task=Task, workload=Workload(), scale="reduced", epochs=1,
                    seed=0, device=torch.device("cpu"))
    assert run.held_out is None
    with pytest.raises(UserError, match="uses_held_out = True"):
        run.require_held_out("recording", "its meta loss")


def test_a_scale_is_paper_or_reduced() -> None:
    with pytest.raises(ValueError, match="scale must be one of paper, reduced"):
        start_run(Recording(), nn.Linear(2, 1), task=type("T", (), {"name": "t", "kind": "image",
                  "optim": OptimSettings(), "base_lr": 0.1}), workload=type("W", (), {"steps_per_epoch": 1,
                  "num_outputs": 1})(), scale="mini", epochs=1, seed=0, device=torch.device("cpu"))


def test_the_loop_trains_through_train_step(monkeypatch: pytest.MonkeyPatch, data_dir) -> None:
    import mlrsnet.harness.loop as loop_module
    import mlrsnet.harness.step as step_module
    from mlrsnet.harness.experiment import Cell

    seen: list[int] = []

    def counting(method, info, *args):
        seen.append(info.step)
        return train_step(method, info, *args)

    # the loop's body is workload_step, which calls train_step
    assert loop_module.workload_step is step_module.workload_step
    monkeypatch.setattr(step_module, "train_step", counting)
    result = loop_module.train(Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.05}, overrides={"epochs": 1}))
    assert seen == result.steps["step"] == list(range(len(seen))) and seen
