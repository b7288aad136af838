"""The timm adapter, against real timm: a timm model, timm's optimizer factory and loss scaler,
in a loop shaped like timm's ``train.py``, with ``step_update(num_updates, metric=loss)``
called before the update it sizes.

Reference: a plain MLRSNetScheduler fed the same losses.  timm's end-of-epoch
``step(epoch, metric)`` changes nothing (the epoch is never read as a loss); ``train.py``'s own
placement (after the update) is warned about; the state survives ``torch.save`` with
``weights_only=True``.
"""

from __future__ import annotations

import io
import warnings

import pytest
import timm
import timm.optim
import timm.utils
import torch
import torch.nn.functional as F
from timm.scheduler.scheduler import Scheduler

from mlrsnet.snet.integrations.timm import MLRSNetTimmScheduler
from mlrsnet.snet.scheduler import MLRSNetScheduler

EPOCHS, UPDATES = 2, 4  # updates per epoch


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(UPDATES * 8, 3, 16, 16, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return list(zip(x.split(8), y.split(8), strict=True))


def train(before_update: bool = True):
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=4)
    optimizer = timm.optim.create_optimizer_v2(model, "sgd", lr=0.0, weight_decay=5e-4, momentum=0.9)
    lr_scheduler = MLRSNetTimmScheduler(optimizer, "ours", num_classes=4, epochs=EPOCHS, steps_per_epoch=UPDATES)
    loss_scaler = timm.utils.NativeScaler(device="cpu")
    losses, lrs, num_updates = [], [], 0
    for epoch in range(EPOCHS):
        for x, y in batches():
            loss = F.cross_entropy(model(x), y)
            if before_update:
                lr_scheduler.step_update(num_updates, metric=loss)
            optimizer.zero_grad()
            loss_scaler(loss, optimizer)
            lrs.append([g["lr"] for g in optimizer.param_groups])
            losses.append(float(loss.detach()))
            num_updates += 1
            if not before_update:  # where timm's train.py calls it
                lr_scheduler.step_update(num_updates=num_updates, metric=loss)
        lr_scheduler.step(epoch + 1, losses[-1])  # timm's end-of-epoch call
    return lr_scheduler, losses, lrs


def test_step_update_sets_the_lr_of_the_update_from_its_loss() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module="mlrsnet")
        lr_scheduler, losses, lrs = train()
    assert isinstance(lr_scheduler, Scheduler)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    reference = MLRSNetScheduler(opt, "ours", num_classes=4, epochs=EPOCHS, steps_per_epoch=UPDATES)
    for loss, used in zip(losses, lrs, strict=True):
        reference.step(loss)
        assert used[0] == used[1] == pytest.approx(reference.get_last_lr()[0], rel=1e-6)  # both timm groups
    assert lr_scheduler.mlrsnet.last_epoch == EPOCHS * UPDATES - 1  # the epoch ends added no step


def test_timms_own_placement_after_the_update_is_warned_about() -> None:
    with pytest.warns(UserWarning, match="first called after optimizer.step"):
        train(before_update=False)


def test_step_update_without_the_loss_is_refused() -> None:
    lr_scheduler, _, _ = train()
    with pytest.raises(TypeError, match="metric=the loss"):
        lr_scheduler.step_update(8)
    with pytest.raises(TypeError, match="epoch"):
        lr_scheduler.mlrsnet.step(3)  # an epoch number handed to the scheduler itself


def test_its_state_saves_weights_only_and_resumes() -> None:
    lr_scheduler, _, _ = train()
    buffer = io.BytesIO()
    torch.save(lr_scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    fresh = MLRSNetTimmScheduler(opt, "ours", num_classes=4, epochs=EPOCHS, steps_per_epoch=UPDATES)
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == pytest.approx(lr_scheduler.get_last_lr())
    assert fresh.mlrsnet.last_epoch == lr_scheduler.mlrsnet.last_epoch
