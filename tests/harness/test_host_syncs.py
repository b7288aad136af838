"""A step of a method that does not read the loss never waits for the device.

On a GPU every value that leaves the device (``float(t)``, ``t.item()``, ``t.tolist()``...)
makes the host wait for the queued kernels.  The loop keeps the loss, the train metrics and
the evaluation sums on the device and reads them once per epoch; only methods that need the
loss on the host (``reads_loss = True``: MLR-SNet, HD, L4, RTHO) read it every step.  On
the CPU the same points are counted by wrapping them.
"""

from __future__ import annotations

import os
import sys
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


# -- host-to-device copies ------------------------------------------------------------------
# On a GPU every host tensor (or Python number list) sent to the device is a copy the step
# waits for.  On the CPU the same calls are counted: ``Tensor.to(<device>)`` of a host
# tensor, and ``torch.tensor`` / ``torch.as_tensor`` of host data with a ``device``.


@dataclass
class Copies:
    calls: list[str] = field(default_factory=list)


def _names_a_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if "device" in kwargs and kwargs["device"] is not None:
        return True
    return any(isinstance(a, torch.device | str) for a in args)


def _forget_constants() -> None:
    from mlrsnet.paper.data import images

    cache = getattr(images, "_cached_channels", None)
    if cache is not None:
        cache.cache_clear()


@pytest.fixture
def host_to_device(monkeypatch: pytest.MonkeyPatch) -> Copies:
    copies = Copies()
    to, as_tensor, tensor = torch.Tensor.to, torch.as_tensor, torch.tensor

    def counted_to(self, *args: Any, **kwargs: Any) -> Any:
        # the model's parameters, placed once when it is built (nn.Module.to), are not counted
        placing_model = sys._getframe(1).f_code.co_filename.endswith(os.path.join("nn", "modules", "module.py"))
        if self.device.type == "cpu" and _names_a_device(args, kwargs) and not placing_model:
            copies.calls.append(f"Tensor.to {tuple(self.shape)}")
        return to(self, *args, **kwargs)

    def counted(original: Any, name: str) -> Any:
        def wrapped(data: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("device") is not None and not (isinstance(data, torch.Tensor)
                                                          and data.device.type != "cpu"):
                copies.calls.append(name)
            return original(data, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(torch.Tensor, "to", counted_to)
    monkeypatch.setattr(torch, "as_tensor", counted(as_tensor, "as_tensor"))
    monkeypatch.setattr(torch, "tensor", counted(tensor, "tensor"))
    return copies


def test_an_augmented_image_step_copies_nothing_to_the_device(data_dir, host_to_device: Copies,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 4 copies a step (crop offsets, flips, normalisation mean and std), 2 per
    evaluation batch.  Now one copy an epoch (the permutation with the epoch's augmentation
    numbers), and the data (and the model) placed once when the workload is built."""
    _forget_constants()  # built once per process and device
    run("constant-test", monkeypatch)
    steps = EPOCHS * STEPS_PER_EPOCH
    build = 6  # train, held-out and test images and labels, placed on the device once
    # per epoch: one packed transfer; once per process: the two normalisation constants
    assert len(host_to_device.calls) <= build + EPOCHS + 2, host_to_device.calls
    assert (len(host_to_device.calls) - build) / steps <= 0.1


def test_a_meta_batch_is_one_copy(data_dir, host_to_device: Copies) -> None:
    """A held-out batch of MLR-SNet's look-ahead: its indices and augmentation numbers in
    one transfer (before: three, plus the normalisation constants)."""
    from mlrsnet.harness.experiment import resolved_profile
    from mlrsnet.harness.registry import get_task

    task = get_task("resnet18-cifar10")
    workload, model = task.build(resolved_profile(Cell("resnet18-cifar10", "smoke", "mlrsnet")), torch.device("cpu"))
    meta = workload.held_out(model, torch.Generator().manual_seed(1)).batches
    next(meta)  # the constants, once
    before = len(host_to_device.calls)
    for _ in range(5):
        next(meta)
    assert len(host_to_device.calls) - before == 5, host_to_device.calls[before:]
