"""Helpers for the model-zoo tests: parameter counts without allocating, one CPU train step."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn


def _param_count(build: Callable[[], nn.Module]) -> int:
    # Building on the meta device allocates nothing, so paper-scale models cost milliseconds.
    with torch.device("meta"):
        model = build()
    return sum(p.numel() for p in model.parameters())


def _train_step(
    model: nn.Module, num_classes: int, size: int = 32, batch: int = 2, unused: str | None = None
) -> torch.Tensor:
    """One forward+backward on CPU; returns the logits and checks every parameter got a gradient
    (except those whose name contains ``unused``: layers a network holds but never calls)."""
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, num_classes, (batch,))
    model.train()
    logits = model(images)
    nn.functional.cross_entropy(logits, labels).backward()
    missing = [
        name for name, p in model.named_parameters() if p.grad is None and not (unused and unused in name)
    ]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    return logits


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The models here are tiny; on a shared 2-core machine two OpenMP threads that
    # spin-wait on each other made a batch-2 step 5-50x slower than one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def param_count() -> Callable[[Callable[[], nn.Module]], int]:
    return _param_count


@pytest.fixture
def train_step() -> Callable[..., torch.Tensor]:
    return _train_step
