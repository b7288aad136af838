"""MLRSNetScheduler on bad losses and skipped steps: the schedule advances once per optimizer
step actually taken, on that step's loss.

* A NaN or infinite loss is not taken in: the LRs, the LSTM state and ``last_epoch`` stay, it is
  counted and warned about once, and every LR after it equals the LR of the same run without
  that call (the reference: the same scheduler fed the losses with the bad one left out).
* A step ``torch.amp.GradScaler`` skips (scaled gradients overflowed, loss finite) is withdrawn
  at the next ``step(loss)``: the LRs and the weights equal those of a run without that batch
  and without a scaler.
* Gradient accumulation with ``step(mean micro-batch loss)`` once per optimizer step gives the
  LRs and weights of the same run with one large batch; stepping per micro-batch is warned about.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlrsnet.snet.scheduler import ACCUMULATION_WARNING, MLRSNetScheduler

LOSSES = [2.3 * math.exp(-0.07 * t) + 0.05 * math.sin(t) for t in range(15)]


def make(**kw) -> tuple[torch.optim.SGD, MLRSNetScheduler]:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.0)
    kw.setdefault("total_steps", 12)  # stages start at steps 4 and 8
    return opt, MLRSNetScheduler(opt, "ours", num_classes=10, **kw)


def lrs_of(losses: list[float], **kw) -> tuple[list[float], MLRSNetScheduler]:
    """The first group's LR after each step(loss), in a loop that steps the optimizer after
    every finite loss and skips it on a non-finite one (as a loop should)."""
    opt, sched = make(**kw)
    out = []
    for loss in losses:
        sched.step(loss)
        out.append(opt.param_groups[0]["lr"])
        if math.isfinite(loss):
            opt.step()
    return out, sched


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", [0, 3, 4, 9])  # the first step, before / at a stage switch, late
def test_the_lrs_after_a_nonfinite_loss_equal_those_of_the_run_without_it(bad: float, where: int) -> None:
    clean, reference = lrs_of(LOSSES)
    with pytest.warns(UserWarning, match="not finite"):
        got, sched = lrs_of(LOSSES[:where] + [bad] + LOSSES[where:])
    before = got[where - 1] if where else 0.0  # before the first step: the LR the group was built with
    assert got[where] == before  # the LR stays
    assert got[:where] + got[where + 1:] == clean  # exactly, every LR after it
    assert sched.last_epoch == reference.last_epoch == len(LOSSES) - 1
    assert sched.nonfinite_losses == 1
    assert all(math.isfinite(lr) for lr in got)


def test_a_nonfinite_loss_is_warned_about_once_and_counted_every_time() -> None:
    opt, sched = make()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for loss in [2.3, float("nan"), 2.1, float("inf"), torch.tensor(float("nan")), 1.9]:
            sched.step(loss)
    messages = [str(w.message) for w in seen]
    assert len(messages) == 1 and "nonfinite_losses" in messages[0]
    assert seen[0].filename == __file__  # points at the caller's line
    assert sched.nonfinite_losses == 3
    assert sched.state_dict()["nonfinite_losses"] == 3


def test_a_nan_at_the_first_step_keeps_the_initial_lr_and_gamma_comes_from_the_first_finite_loss() -> None:
    opt, sched = make()
    with pytest.warns(UserWarning, match="not finite"):
        sched.step(float("nan"))
    assert opt.param_groups[0]["lr"] == 0.0 and sched.last_epoch == -1 and math.isnan(sched.gamma)
    sched.step(2.3)
    _, clean = make()
    clean.step(2.3)
    assert sched.gamma == clean.gamma and sched.get_last_lr() == clean.get_last_lr()


def test_a_reference_loss_that_is_not_finite_falls_back_to_the_recent_mean() -> None:
    opt, sched = make(reference_loss=lambda: float("nan"))
    with pytest.warns(UserWarning, match="reference_loss"):
        sched.step(2.3)
    _, clean = make()
    clean.step(2.3)
    assert sched.gamma == clean.gamma  # the recent mean: the first loss


# ---------------------------------------------------------------------------------------
# skipped optimizer steps: torch.amp.GradScaler
# ---------------------------------------------------------------------------------------
def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12 * 16, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long() + 2 * (x[:, 5:8].sum(1) > 0).long()
    return list(zip(x.split(16), y.split(16), strict=True))


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))


#: A loss weight that makes a step's scaled gradients overflow (GradScaler skips it) while the
#: loss itself stays finite (about 1.4e36).
POISON = 1e36


def _train(batches, *, scaler: torch.amp.GradScaler | None, poison_at: tuple[int, ...] = ()):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    sched = MLRSNetScheduler(opt, "ours", num_classes=4, total_steps=12)
    lrs, skipped = [], []
    for k, (xb, yb) in enumerate(batches):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(xb), yb) * (POISON if k in poison_at else 1.0)
        opt.zero_grad()
        if scaler is None:
            loss.backward()
            sched.step(loss)
            opt.step()
        else:
            scaler.scale(loss).backward()
            sched.step(loss)
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped.append(scaler.get_scale() < scale)
        lrs.append(opt.param_groups[0]["lr"])
    return model, sched, lrs, skipped


@pytest.mark.parametrize("poison_at", [[5], [3, 4, 8]])
def test_steps_gradscaler_skips_are_withdrawn_lrs_and_weights_equal_the_run_without_them(poison_at) -> None:
    batches = _data()
    amp_model, amp_sched, amp_lrs, skipped = _train(batches, scaler=torch.amp.GradScaler("cpu"),
                                                    poison_at=tuple(poison_at))
    assert [k for k, s in enumerate(skipped) if s] == poison_at  # GradScaler did skip those
    kept = [b for k, b in enumerate(batches) if k not in poison_at]
    ref_model, ref_sched, ref_lrs, _ = _train(kept, scaler=None)
    # the last poisoned step is withdrawn only by the next step(loss): compare up to there
    taken = [lr for k, lr in enumerate(amp_lrs) if k not in poison_at]
    assert taken == ref_lrs[: len(taken)]
    for a, b in zip(amp_model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert amp_sched.withdrawn_steps == len(poison_at)
    assert amp_sched.last_epoch == ref_sched.last_epoch


def test_skips_before_the_first_optimizer_step_leave_only_that_steps_lr_off() -> None:
    """Before its first step nothing tells a skipping GradScaler from a loop that never steps
    the optimizer (tabulating LRs); when the first step comes, the state is rebuilt from the
    loss whose step was taken, so from the second taken step on the LRs are those of the
    same losses without the skipped ones."""
    opt, sched = make()
    got = []
    for t, loss in enumerate(LOSSES[:10]):
        sched.step(loss)
        got.append(sched.get_last_lr()[0])
        if t not in (0, 1):  # the first two steps were skipped
            opt.step()
    clean, _ = lrs_of(LOSSES[2:10])
    assert got[2] != clean[0]  # the first taken step read its LR from all three losses ...
    assert got[3:] == clean[1:]  # ... every later one is exact
    assert sched.withdrawn_steps == 2 and sched.last_epoch == 7


def test_a_checkpoint_written_after_a_skipped_step_resumes_without_it() -> None:
    losses = LOSSES[:10]
    skip_at = 5
    opt, straight = make()
    expected = []
    for t, loss in enumerate(losses):
        straight.step(loss)
        expected.append(straight.get_last_lr())
        if t != skip_at:
            opt.step()
    opt, first = make()
    for t, loss in enumerate(losses[: skip_at + 1]):
        first.step(loss)
        if t != skip_at:
            opt.step()
    saved = first.state_dict()  # the optimizer has not taken step 5
    assert saved["undo"] is not None
    opt, resumed = make()
    resumed.load_state_dict(saved)
    assert resumed.withdrawn_steps == 1 and resumed.last_epoch == skip_at - 1
    got = []
    for loss in losses[skip_at + 1:]:
        resumed.step(loss)
        got.append(resumed.get_last_lr())
        opt.step()
    assert got == expected[skip_at + 1:]


# ---------------------------------------------------------------------------------------
# gradient accumulation
# ---------------------------------------------------------------------------------------
def test_accumulating_micro_batches_with_their_mean_loss_equals_one_large_batch() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8 * 32, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long()
    runs = {}
    for micro in (1, 4):
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        sched = MLRSNetScheduler(opt, "ours", num_classes=2, epochs=3, steps_per_epoch=8 // 3 + 1)
        lrs = []
        for xb, yb in zip(x.split(32), y.split(32), strict=True):
            opt.zero_grad()
            step_loss = 0.0
            for xm, ym in zip(xb.chunk(micro), yb.chunk(micro), strict=True):
                loss = F.cross_entropy(model(xm), ym) / micro
                loss.backward()
                step_loss += loss.detach()
            sched.step(step_loss)  # once per optimizer step, the mean micro-batch loss
            opt.step()
            lrs.append(opt.param_groups[0]["lr"])
        runs[micro] = (lrs, [p.detach().clone() for p in model.parameters()])
    assert runs[4][0] == pytest.approx(runs[1][0], rel=1e-5)
    for a, b in zip(runs[4][1], runs[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_stepping_per_micro_batch_reads_the_last_and_is_warned_about_once() -> None:
    opt, sched = make(total_steps=40)
    micro_losses = [[2.3 - 0.01 * (4 * t + m) for m in range(4)] for t in range(6)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for losses in micro_losses:
            for loss in losses:
                sched.step(loss)
            opt.step()
    assert [str(w.message) for w in seen] == [ACCUMULATION_WARNING]
    _, last_only = make(total_steps=40)
    for losses in micro_losses:
        last_only.step(losses[-1])
    assert sched.get_last_lr() == last_only.get_last_lr()
    assert sched.last_epoch == 5 and sched.withdrawn_steps == 6 * 3
