"""A step of a method that does not read the loss never waits for the device.

On a GPU every value that leaves the device (``float(t)``, ``t.item()``, ``t.tolist()``...)
makes the host wait for the queued kernels.  The loop keeps the loss, the train metrics and
the evaluation sums on the device and reads them once per epoch; only methods that need the
loss on the host (``reads_loss = True``: MLR-SNet, HD, L4, RTHO) read it every step.  On
the CPU the same points are counted by wrapping them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import torch

from mlrsnet.harness import loop
from mlrsnet.harness.contract import Method, StepInfo
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.registry import get_method

LEAVES_DEVICE = ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy", "__format__")
EPOCHS, STEPS_PER_EPOCH = 2, 20  # smoke ResNet-18 with 640 training images, batch 32


@dataclass
class Counter:
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter()
    for name in LEAVES_DEVICE:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            counter.calls[_name] = counter.calls.get(_name, 0) + 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counter


class ConstantLR(Method):
    name: ClassVar[str] = "constant-test"
    defaults: ClassVar[dict[str, Any]] = {"lr": 0.05}
    reads_loss: ClassVar[bool] = False

    def lr(self, step: StepInfo) -> float:
        return 0.05


class LossReadingLR(ConstantLR):
    name: ClassVar[str] = "loss-reading-test"
    reads_loss: ClassVar[bool] = True


def run(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    classes = {cls.name: cls for cls in (ConstantLR, LossReadingLR)}
    monkeypatch.setattr(loop, "get_method", lambda name: classes.get(name) or get_method(name))
    result = loop.train(Cell("resnet18-cifar10", "smoke", method,
                             overrides={"epochs": EPOCHS, "train_size": 32 * STEPS_PER_EPOCH}))
    assert result.status == "finished" and len(result.steps["loss"]) == EPOCHS * STEPS_PER_EPOCH


@pytest.mark.parametrize("method", ["constant-test", "fixed", "multistep"])
def test_a_method_that_does_not_read_the_loss_reads_the_device_a_few_times_per_epoch(
        data_dir, host_reads: Counter, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    run(method, monkeypatch)
    # per epoch: the trace's losses (1), the train loss and accuracy sums (2), each split's
    # loss and accuracy sums (4), whatever the number of steps
    assert host_reads.total <= 8 * EPOCHS, host_reads.calls


def test_a_method_that_reads_the_loss_reads_it_every_step(data_dir, host_reads: Counter,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run("loss-reading-test", monkeypatch)  # the counter sees the per-step reads (it can fail)
    assert host_reads.total >= EPOCHS * STEPS_PER_EPOCH, host_reads.calls


class ExplodingLR(ConstantLR):
    name: ClassVar[str] = "exploding-test"

    def lr(self, step: StepInfo) -> float:
        return 1e6


class ExplodingLossReadingLR(ExplodingLR):
    name: ClassVar[str] = "exploding-loss-reading-test"
    reads_loss: ClassVar[bool] = True


def test_divergence_found_at_the_epochs_end_gives_the_tables_of_the_per_step_check(
        data_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    classes = {cls.name: cls for cls in (ExplodingLR, ExplodingLossReadingLR)}
    monkeypatch.setattr(loop, "get_method", lambda name: classes[name])
    results = [loop.train(Cell("resnet18-cifar10", "smoke", name, overrides={"train_size": 320}))
               for name in classes]
    deferred, checked = results
    assert checked.status == deferred.status == "diverged"
    assert deferred.diverged_step == checked.diverged_step
    assert deferred.epochs == checked.epochs
    # the same trace, the non-finite step last with the LR it was not given (nan)
    for key in ("step", "epoch", "loss"):
        assert deferred.steps[key] == pytest.approx(checked.steps[key], nan_ok=True), key
    assert str(deferred.steps["lr"]) == str(checked.steps["lr"])
