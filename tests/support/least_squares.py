"""A linear least-squares problem small enough to follow by hand, for update-by-update tests.

``nn.Linear(2, 1)`` in float64 on batches drawn from ``y = 1.5 x1 - 2 x2 + 0.3 + noise``;
the numpy side works on ``theta = (w1, w2, bias)`` so a test can recompute every step of a
method from its paper's equations, independently of the method's code.

:class:`StubTask` and :class:`StubWorkload` carry the few facts that
:func:`mlrsnet.harness.step.start_run` reads from a task and a workload, so a hand-built run
(here, or the toy runs of other method tests) is set up exactly as the loop sets up a real one.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from mlrsnet.harness.contract import HeldOut, Method, OptimSettings, RunContext, StepInfo
from mlrsnet.harness.step import start_run, train_step

Batch = tuple[np.ndarray, np.ndarray]


def least_squares_batches(steps: int, size: int = 4, seed: int = 7) -> list[Batch]:
    rng = np.random.default_rng(seed)
    truth = np.array([1.5, -2.0])
    batches = []
    for _ in range(steps):
        x = rng.normal(size=(size, 2))
        batches.append((x, x @ truth + 0.3 + 0.1 * rng.normal(size=size)))
    return batches


def initial_theta() -> np.ndarray:
    return np.array([0.4, -0.3, 0.2])  # (w1, w2, bias)


def make_model() -> nn.Linear:
    model = nn.Linear(2, 1).double()
    theta = initial_theta()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(theta[:2]).view(1, 2))
        model.bias.copy_(torch.tensor(theta[2:]))
    return model


def flat(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def loss_of_output(output: torch.Tensor, batch: Batch) -> torch.Tensor:
    return 0.5 * ((output.squeeze(1) - torch.tensor(batch[1])) ** 2).mean()


def lsq_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    return loss_of_output(model(torch.tensor(batch[0])), batch)


def design(batch: Batch) -> np.ndarray:
    return np.hstack([batch[0], np.ones((len(batch[0]), 1))])


def lsq_gradient(theta: np.ndarray, batch: Batch) -> np.ndarray:
    a = design(batch)
    return a.T @ (a @ theta - batch[1]) / len(batch[1])


@dataclass(frozen=True)
class StubTask:
    """What :func:`~mlrsnet.harness.step.start_run` reads of a task setting."""

    optim: OptimSettings
    name: str = "least-squares"
    kind: str = "image"
    base_lr: float = 0.1


@dataclass
class StubWorkload:
    """What :func:`~mlrsnet.harness.step.start_run` reads of a workload: fixed held-out
    batches and their loss (``None``: the run holds nothing out)."""

    steps_per_epoch: int
    num_outputs: int | None = None
    batches: Iterator[Any] | None = None
    loss_at: Callable[[Mapping[str, torch.Tensor], Any], torch.Tensor] | None = None

    def held_out(self, model: nn.Module, generator: torch.Generator) -> HeldOut | None:
        return HeldOut(self.batches, self.loss_at) if self.batches is not None else None


def start_stub_run(method: Method, model: nn.Module, optim: OptimSettings, *, steps_per_epoch: int,
                   epochs: int = 1, task_name: str = "least-squares", scale: str = "reduced",
                   kind: str = "image", num_outputs: int | None = None, seed: int = 0,
                   base_lr: float = 0.1, held_out_batches: Iterator[Any] | None = None,
                   held_out_loss: Callable[[Mapping[str, torch.Tensor], Any], torch.Tensor] | None = None,
                   artifact_dir: str | None = None) -> RunContext:
    """:func:`~mlrsnet.harness.step.start_run` on a hand-built run (on the CPU)."""
    return start_run(method, model, task=StubTask(optim, name=task_name, kind=kind, base_lr=base_lr),
                     workload=StubWorkload(steps_per_epoch, num_outputs, held_out_batches, held_out_loss),
                     scale=scale, epochs=epochs, seed=seed, device=torch.device("cpu"),
                     artifact_dir=artifact_dir)


class ContractDriver:
    """The loop's set-up and step functions (:func:`~mlrsnet.harness.step.start_run`,
    :func:`~mlrsnet.harness.step.train_step`) on the least-squares problem, nothing more.

    ``held_out`` batches, when given, are served (cycled, from ``held_out_start``) as the
    run's meta batches, with a functional ``meta_loss`` as the real workloads provide.
    """

    def __init__(self, method: Method, model: nn.Module, optim: OptimSettings, *,
                 steps_per_epoch: int, held_out: list[Batch] | None = None,
                 held_out_start: int = 0) -> None:
        self.method, self.model, self.optim = method, model, optim
        served = itertools.islice(itertools.cycle(held_out or []), held_out_start, None)
        self.held_out_served = 0

        def meta_batches() -> Iterator[Batch]:
            for batch in served:
                self.held_out_served += 1
                yield batch

        def meta_loss(params: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
            output = functional_call(model, dict(params), (torch.tensor(batch[0]),))
            return loss_of_output(output, batch)

        self.run = start_stub_run(method, model, optim, steps_per_epoch=steps_per_epoch,
                                  held_out_batches=meta_batches() if held_out else None,
                                  held_out_loss=meta_loss if held_out else None)
        self.params, self.optimizer = self.run.params, self.run.optimizer
        self.step_index = 0

    def step(self, batch: Batch) -> float:
        loss = lsq_loss(self.model, batch)
        info = StepInfo(step=self.step_index, epoch=0, index_in_epoch=self.step_index, loss=loss)
        result = train_step(self.method, info, self.params, self.optimizer, self.optim.clip_grad_norm)
        assert not result.diverged, f"step {self.step_index} diverged: {result}"
        self.step_index += 1
        return result.lr


def interrupt_and_resume(make_method: Callable[[], Method], optim: OptimSettings, batches: list[Batch],
                         stop: int, *, steps_per_epoch: int,
                         held_out: list[Batch] | None = None) -> ContractDriver:
    """Run ``batches[:stop]``, save method and model state through ``torch.save``, and
    return a driver on fresh objects restored from it (meta batches continue where they
    stopped), ready for ``batches[stop:]``."""
    first = ContractDriver(make_method(), make_model(), optim, steps_per_epoch=steps_per_epoch,
                           held_out=held_out)
    for batch in batches[:stop]:
        first.step(batch)
    buffer = io.BytesIO()
    torch.save({"method": first.method.state_dict(), "model": first.model.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    model, method = make_model(), make_method()
    model.load_state_dict(saved["model"])
    method.load_state_dict(saved["method"])
    return ContractDriver(method, model, optim, steps_per_epoch=steps_per_epoch, held_out=held_out,
                          held_out_start=first.held_out_served)
