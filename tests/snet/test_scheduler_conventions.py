"""MLRSNetScheduler against torch's scheduler conventions, and the misuses it refuses.

* ``step()`` without a loss, an integer (an epoch number), an integer or multi-element tensor:
  refused with a message naming the fix, never read as a loss.
* Pickle and deepcopy at any time, before the first step included; the copy goes on with the
  same LRs, and its optimizer hook is live (it still sees skipped optimizer steps).
* ``last_epoch=`` as torch's: ``-1`` fresh, ``k >= 0`` resumes the position and needs
  ``initial_lr`` in every param group (torch's own ``StepLR`` is the reference for the error).
"""

from __future__ import annotations

import copy
import io
import math
import pickle

import pytest
import torch
from torch import nn

from mlrsnet.snet.scheduler import NO_LOSS_ERROR, MLRSNetScheduler

LOSSES = [2.3 * math.exp(-0.05 * t) for t in range(20)]


def make(opt: torch.optim.Optimizer | None = None, **kw) -> tuple[torch.optim.Optimizer, MLRSNetScheduler]:
    opt = opt if opt is not None else torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.0, momentum=0.9)
    kw.setdefault("total_steps", 12)
    return opt, MLRSNetScheduler(opt, "ours", num_classes=10, **kw)


# -- misuse ---------------------------------------------------------------------------------
def test_step_without_a_loss_names_the_adapters() -> None:
    _, sched = make()
    with pytest.raises(TypeError) as refused:
        sched.step()
    assert str(refused.value) == NO_LOSS_ERROR
    for name in ("lightning.MLRSNetCallback", "huggingface.MLRSNetCallback", "timm.MLRSNetTimmScheduler",
                 "docs/training_loops.md"):
        assert name in NO_LOSS_ERROR


@pytest.mark.parametrize("epoch", [5, 0, True, torch.tensor(5), torch.tensor([3])])
def test_an_epoch_number_is_refused_not_read_as_a_loss(epoch) -> None:
    _, sched = make()
    with pytest.raises(TypeError, match="epoch"):
        sched.step(epoch)
    assert sched.last_epoch == -1


def test_an_unreduced_loss_is_refused() -> None:
    _, sched = make()
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        sched.step(torch.ones(4))


@pytest.mark.parametrize("loss", [2.3, torch.tensor(2.3), torch.tensor([2.3]), torch.tensor(2.3, dtype=torch.float16)])
def test_a_float_or_one_element_float_tensor_is_a_loss(loss) -> None:
    _, sched = make()
    sched.step(loss)
    _, ref = make()
    ref.step(float(loss))
    assert sched.get_last_lr() == ref.get_last_lr()


# -- pickle and deepcopy --------------------------------------------------------------------
def _lrs_after(sched: MLRSNetScheduler, opt: torch.optim.Optimizer, losses: list[float]) -> list[float]:
    out = []
    for loss in losses:
        sched.step(loss)
        out.append(sched.get_last_lr()[0])
        opt.step()
    return out


def _pickled(sched: MLRSNetScheduler) -> MLRSNetScheduler:
    return pickle.loads(pickle.dumps(sched))


def _saved(sched: MLRSNetScheduler) -> MLRSNetScheduler:
    buffer = io.BytesIO()
    torch.save(sched, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("how", [copy.deepcopy, _pickled, _saved])
@pytest.mark.parametrize("after", [0, 1, 7])
def test_a_copy_made_at_any_time_continues_with_the_same_lrs(how, after: int) -> None:
    opt, sched = make()
    _lrs_after(sched, opt, LOSSES[:after])
    twin = how(sched)
    assert twin.optimizer is not opt and twin.last_epoch == sched.last_epoch == after - 1
    assert _lrs_after(twin, twin.optimizer, LOSSES[after:]) == _lrs_after(sched, opt, LOSSES[after:])


def test_the_copys_optimizer_hook_is_live() -> None:
    """The copy sees its own optimizer's steps: a step it did not take is withdrawn."""
    opt, sched = make()
    _lrs_after(sched, opt, LOSSES[:3])
    twin = copy.deepcopy(sched)
    twin.step(LOSSES[3])  # twin.optimizer does not step: skipped
    twin.step(LOSSES[4])
    assert twin.withdrawn_steps == 1 and twin.last_epoch == 3
    opt.step()  # the original's optimizer stepping does not count for the copy
    assert sched.withdrawn_steps == 0


# -- last_epoch -----------------------------------------------------------------------------
def test_last_epoch_at_or_above_0_needs_initial_lr_as_torch_does() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(KeyError, match="initial_lr") as torchs:
        torch.optim.lr_scheduler.StepLR(opt, step_size=3, last_epoch=4)
    with pytest.raises(KeyError, match="initial_lr") as ours:
        make(opt, last_epoch=4)
    assert "param 'initial_lr' is not specified in param_groups[0]" in str(torchs.value)
    assert "param 'initial_lr' is not specified in param_groups[0]" in str(ours.value)


@pytest.mark.parametrize("bad", [-2, 1.5, "3"])
def test_last_epoch_must_be_an_integer_from_minus_1(bad) -> None:
    with pytest.raises(ValueError, match="last_epoch"):
        make(last_epoch=bad)


def test_last_epoch_k_resumes_the_position_the_next_step_is_k_plus_1() -> None:
    opt, first = make(total_steps=12)  # stages start at steps 4 and 8
    _lrs_after(first, opt, LOSSES[:6])
    assert first.last_epoch == 5 and first.current_checkpoint == first.stage_epochs[1]
    # a new scheduler on the optimizer (its groups carry initial_lr), at the same position
    resumed = MLRSNetScheduler(opt, "ours", num_classes=10, total_steps=12, last_epoch=first.last_epoch)
    assert resumed.last_epoch == 5 and resumed.get_last_lr() == first.get_last_lr()
    resumed.step(LOSSES[6])
    opt.step()
    assert resumed.last_epoch == 6 and resumed.current_checkpoint == first.stage_epochs[1]
    for loss in LOSSES[7:9]:
        resumed.step(loss)
        opt.step()
    assert resumed.last_epoch == 8 and resumed.current_checkpoint == first.stage_epochs[2]
    # the position only: a fresh LSTM state, gamma from the first loss it reads
    assert resumed.state_dict()["recent"][0] == LOSSES[6]


def test_a_fresh_scheduler_keeps_last_epoch_minus_1_and_takes_no_step() -> None:
    opt, sched = make()
    assert sched.last_epoch == -1 and opt.param_groups[0]["lr"] == 0.0
