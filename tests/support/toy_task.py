"""A task setting written against the harness's protocols alone, as a third-party package
would write one: :class:`~mlrsnet.harness.contract.TaskSetting` with profiles that are plain
frozen dataclasses declaring nothing but ``epochs`` (and, for one of them, ``scale``), and a
:class:`~mlrsnet.harness.contract.Workload` over a fixed two-class problem (two Gaussian
blobs, drawn once from a fixed seed: a toy for the contract, not a dataset result).

Registered through the ``mlrsnet.tasks`` entry-point group by :func:`register_toy_task`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlrsnet.harness.contract import BatchStats, HeldOut, OptimSettings, check_split


@dataclass(frozen=True)
class EpochsOnly:
    epochs: int


@dataclass(frozen=True)
class PaperScale:
    epochs: int
    scale: str = "paper"


def _blobs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) + torch.stack([y * 2.0 - 1.0, torch.zeros(n)], 1)
    return x, y


class ToyWorkload:
    kind, metric, num_outputs, data_source = "image", "acc", 2, "toy blobs (no files)"

    def __init__(self, device: torch.device) -> None:
        self.x, self.y = (t.to(device) for t in _blobs(64, 0))
        self.x_val, self.y_val = (t.to(device) for t in _blobs(32, 1))
        self.x_test, self.y_test = (t.to(device) for t in _blobs(32, 2))
        self.steps_per_epoch, self.sizes = 4, {"train": 64, "val": 32, "test": 32}

    def start_epoch(self, model: nn.Module) -> Any:
        return None

    def train_batches(self, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(64, generator=generator)
        for k in range(4):
            idx = order[16 * k:16 * (k + 1)]
            yield self.x[idx], self.y[idx]

    def loss(self, model: nn.Module, batch: Any, carry: Any, stats: BatchStats) -> tuple[Tensor, Any]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        stats.loss_sum += float(loss.detach()) * len(y)
        stats.correct += int((logits.argmax(1) == y).sum())
        stats.count += len(y)
        return loss, carry

    def summarize(self, stats: BatchStats) -> dict[str, float]:
        return {"loss": stats.loss_sum / stats.count, "acc": stats.correct / stats.count}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        x, y = (self.x_test, self.y_test) if check_split(split) == "test" else (self.x_val, self.y_val)
        logits = model(x)
        return {"loss": float(F.cross_entropy(logits, y)), "acc": float((logits.argmax(1) == y).float().mean())}

    def held_out(self, model: nn.Module, generator: torch.Generator) -> HeldOut:
        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            while True:
                yield self.x_val, self.y_val

        def loss(params: Mapping[str, Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
            return F.cross_entropy(torch.func.functional_call(model, dict(params), (batch[0],)), batch[1])

        return HeldOut(batches(), loss)

    def train_loss_pass(self, model: nn.Module, generator: torch.Generator) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model(self.x), self.y))


@dataclass(frozen=True)
class ToyTask:
    name: str = "toy-blobs"
    kind: str = "image"
    optim: OptimSettings = OptimSettings()
    base_lr: float = 0.5

    @property
    def profiles(self) -> dict[str, Any]:
        return {"quick": EpochsOnly(epochs=3), "gpu-full": PaperScale(epochs=3)}

    def profile(self, name: str) -> Any:
        return self.profiles[name]

    def build(self, profile: Any, device: torch.device, data_dir: str | None) -> tuple[ToyWorkload, nn.Module]:
        return ToyWorkload(device), nn.Linear(2, 2).to(device)


TASKS = {"toy-blobs": ToyTask()}


def register_toy_task(folder: Path, monkeypatch: Any) -> None:
    """Make ``toy-blobs`` a registered task, as an installed package's entry point would."""
    from mlrsnet.harness import registry

    dist = folder / "toy_task_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-task-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mlrsnet.tasks]\ntoy = support.toy_task:TASKS\n")
    monkeypatch.syspath_prepend(str(folder))
    registry.tasks.cache_clear()
