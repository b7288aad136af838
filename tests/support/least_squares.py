"""A linear least-squares problem small enough to follow by hand, for update-by-update tests.

``nn.Linear(2, 1)`` in float64 on batches drawn from ``y = 1.5 x1 - 2 x2 + 0.3 + noise``;
the numpy side works on ``theta = (w1, w2, bias)`` so a test can recompute every step of a
method from its paper's equations, independently of the method's code.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from mlrsnet.harness.contract import Method, OptimSettings, RunContext, StepInfo

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


class ContractDriver:
    """The loop's call order, nothing more: build_optimizer, bind, then per step
    backward -> (clip) -> lr -> set LR on every group -> optimizer.step -> after_step.

    ``held_out`` batches, when given, are served (cycled, from ``held_out_start``) as the
    run's meta batches, with a functional ``meta_loss`` as the real workloads provide.
    """

    def __init__(self, method: Method, model: nn.Module, optim: OptimSettings, *,
                 steps_per_epoch: int, held_out: list[Batch] | None = None,
                 held_out_start: int = 0) -> None:
        self.method, self.model, self.optim = method, model, optim
        self.params = list(model.parameters())
        self.optimizer = method.build_optimizer(self.params, optim)
        served = itertools.islice(itertools.cycle(held_out or []), held_out_start, None)
        self.held_out_served = 0

        def meta_batches() -> Iterator[Batch]:
            for batch in served:
                self.held_out_served += 1
                yield batch

        def meta_loss(params: Mapping[str, torch.Tensor], batch: Batch) -> torch.Tensor:
            output = functional_call(model, dict(params), (torch.tensor(batch[0]),))
            return loss_of_output(output, batch)

        method.bind(RunContext(
            model=model, params=self.params, optimizer=self.optimizer, steps_per_epoch=steps_per_epoch,
            epochs=1, task_name="least-squares", profile="test", kind="image", num_classes=None,
            vocab_size=None, optim=optim, seed=0, device=torch.device("cpu"),
            meta_batches=meta_batches() if held_out else None,
            meta_loss=meta_loss if held_out else None,
            param_names=[n for n, _ in model.named_parameters()],
        ))
        self.step_index = 0

    def step(self, batch: Batch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = lsq_loss(self.model, batch)
        self.method.backward(loss, self.params)
        if self.optim.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.optim.clip_grad_norm)
        info = StepInfo(step=self.step_index, epoch=0, index_in_epoch=self.step_index, loss=loss)
        lr = self.method.lr(info)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.method.after_step(info)
        self.step_index += 1
        return lr


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
