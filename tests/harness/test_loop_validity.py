"""What the one training loop guarantees to every method, observed through real runs.

A method is handed held-out batches (``RunContext.held_out``) and sees the gradient
after the loop's clipping; a language model's hidden state runs down the epoch from one
BPTT window to the next.  These tests run :func:`~mlrsnet.harness.loop.train` on smoke
profiles of the real data subsets with a recording method, and compare what the method
saw with references computed here (image bytes from the ``.npz`` read with numpy,
gradient norms computed from ``p.grad``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.augmented import source_index
from torch import Tensor, nn

import mlrsnet.paper.workloads as workloads
from mlrsnet.errors import UserError
from mlrsnet.harness import loop
from mlrsnet.harness.contract import SPLITS, Method, StepInfo, check_split
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.registry import get_task
from mlrsnet.paper.data import NORMALIZATION

IMAGE_TASK, TEXT_TASK = "resnet18-cifar10", "lstm2-ptb"


def grad_norm(params: Sequence[nn.Parameter]) -> float:
    """The 2-norm of all gradients together, summed in float64."""
    grads = [p.grad.detach().double() for p in params if p.grad is not None]
    assert grads, "no gradient to measure"
    return float(torch.sqrt(sum((g * g).sum() for g in grads)))


class Recorder(Method):
    uses_held_out = True  # it reads run.held_out.batches
    """A fixed LR that records what the loop shows it."""

    name = "recorder"
    defaults = {"lr": 0.05, "meta_draws": 0}
    instances: list[Recorder] = []

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.raw_norms: list[float] = []  # right after backward, before the loop clips
        self.seen_norms: list[float] = []  # what lr() sees
        self.meta: list[Any] = []
        Recorder.instances.append(self)

    def bind(self, run) -> None:
        super().bind(run)
        assert run.held_out.batches is not None
        self.meta = [next(run.held_out.batches) for _ in range(self.hparams["meta_draws"])]

    def backward(self, loss: Tensor, params: Sequence[nn.Parameter]) -> None:
        super().backward(loss, params)
        self.raw_norms.append(grad_norm(params))

    def lr(self, step: StepInfo) -> float:
        self.seen_norms.append(grad_norm(self.run.params))
        return float(self.hparams["lr"])


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    real = loop.get_method
    monkeypatch.setattr(loop, "get_method", lambda name: Recorder if name == "recorder" else real(name))
    monkeypatch.setattr(Recorder, "instances", [])
    return Recorder


@pytest.fixture
def built_workloads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every workload the loop builds (``Task.build`` looks ``make_workload`` up per call)."""
    built: list[Any] = []
    real = workloads.make_workload

    def spy(*args: Any, **kwargs: Any) -> Any:
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(workloads, "make_workload", spy)
    return built


def run(task: str, *, seed: int = 0, epochs: int = 1, **hparams: Any) -> Recorder:
    result = loop.train(Cell(task, "smoke", "recorder", hparams, seed=seed, overrides={"epochs": epochs}),
                        device="cpu")
    assert result.status == "finished"
    return Recorder.instances[-1]


# -- independent references for images ------------------------------------------------------
def digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.sha256(np.ascontiguousarray(row).tobytes()).digest() for row in images]


def npz_rows(data_dir: Path) -> dict[bytes, tuple[str, int]]:
    with np.load(data_dir / "cifar10-mini.npz", allow_pickle=False) as npz:
        return {d: (split, row) for split in ("train", "test")
                for row, d in enumerate(digests(npz[f"x_{split}"]))}


def pixels(x: Tensor) -> np.ndarray:
    """Undo the normalisation of a float NCHW batch: uint8 NHWC."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATION["cifar10"])
    return ((x * std + mean) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def where(index: dict[bytes, tuple[str, int]], images: np.ndarray) -> list[tuple[str, int] | None]:
    return [index.get(d) for d in digests(images)]


# -- the held-out split, as the loop builds it and hands it to methods -----------------------
def test_runs_with_different_seeds_hold_out_the_same_training_images(
        data_dir, recorder, built_workloads) -> None:
    index = npz_rows(data_dir)
    held, trained, meta = {}, {}, {}
    for seed in (0, 1):
        method = run(IMAGE_TASK, seed=seed, meta_draws=8)
        (workload,) = built_workloads[-1:]
        held[seed] = where(index, workload.x_held.numpy())
        trained[seed] = where(index, workload.x_train.numpy())
        held_pixels = workload.x_held.numpy()
        meta[seed] = []
        for x, _ in method.meta:  # augmented: find each image's held-out original
            sources = [source_index(image, held_pixels) for image in pixels(x)]
            assert None not in sources, "a meta image is no crop/flip of a held-out image"
            meta[seed].append([held[seed][k] for k in sources])
    assert len(built_workloads) == 2
    assert held[0] == held[1] and trained[0] == trained[1]
    assert all(h is not None and h[0] == "train" for h in held[0])
    assert set(held[0]).isdisjoint(trained[0])
    for seed in (0, 1):
        drawn = {row for batch in meta[seed] for row in batch}
        assert drawn <= set(held[seed])  # a held-out training image, never a test image
    # the run seed does reach the meta batches: the two runs draw them in different orders
    assert meta[0] != meta[1]


def test_language_model_meta_windows_are_validation_text_not_test(data_dir, recorder, built_workloads) -> None:
    method = run(TEXT_TASK, lr=20.0, meta_draws=5)
    (workload,) = built_workloads
    valid, test = workload.val_meta, workload.test_eval
    # (tests/paper/test_workloads.py checks these streams against the corpus files)
    valid_stream = valid.t().reshape(-1)
    test_stream = test.t().reshape(-1)
    for window in method.meta:
        x, y = window.x, window.y
        assert torch.equal(x[1:], y[:-1])
        for column in range(x.size(1)):
            seq = torch.cat([x[:1, column], y[:, column]])
            assert _contains(valid_stream, seq) and not _contains(test_stream, seq)


def _contains(stream: Tensor, seq: Tensor) -> bool:
    return bool((stream.unfold(0, len(seq), 1) == seq).all(dim=1).any())


# -- the hidden state runs down each epoch ---------------------------------------------------
def test_the_loop_passes_each_windows_hidden_state_to_the_next(data_dir, recorder, monkeypatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = workloads.TextWorkload.loss

    def spy(self, model, batch, carry, stats):
        loss, out = real(self, model, batch, carry, stats)
        calls.append((carry, out))
        return loss, out

    monkeypatch.setattr(workloads.TextWorkload, "loss", spy)
    run(TEXT_TASK, lr=20.0, epochs=2)
    steps = len(calls) // 2
    assert steps > 2 and len(calls) == 2 * steps
    for epoch in range(2):
        first, *rest = range(epoch * steps, (epoch + 1) * steps)
        carry_in, _ = calls[first]
        assert all(not t.any() for t in carry_in), f"epoch {epoch} does not start from a zero state"
        for k in rest:
            assert calls[k][0] is calls[k - 1][1], f"window {k} was not given window {k - 1}'s state"
            assert any(t.any() for t in calls[k][0])


# -- gradient clipping happens where the task says so, before the method sees the gradient ---
@pytest.fixture
def clip_calls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args: Any, **kwargs: Any):
        calls.append(float(max_norm))
        return real(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    return calls


def test_language_model_gradients_are_clipped_to_the_tasks_norm_before_the_method_sees_them(
        data_dir, recorder, clip_calls) -> None:
    clip = get_task(TEXT_TASK).optim.clip_grad_norm
    assert clip == 0.25
    method = run(TEXT_TASK, lr=20.0)
    raw, seen = np.array(method.raw_norms), np.array(method.seen_norms)
    assert len(raw) == len(seen) == len(clip_calls) > 0
    assert clip_calls == [clip] * len(raw)
    assert raw.max() > 2 * clip  # clipping had something to do
    # clip_grad_norm_ scales by clip / (norm + 1e-6) with the norm summed in float32, which
    # is off by up to ~1e-4 relative on the 10k-word decoder's gradient (a few large rows
    # among many tiny ones); measured in float64 the clipped norm is clip within that.
    tol = 2e-4 * clip
    assert seen.max() <= clip + tol
    np.testing.assert_allclose(seen, np.minimum(raw, clip), rtol=0, atol=tol)
    assert (seen[raw > clip] > clip - tol).all()  # scaled to the clip norm, not below it


def test_image_gradients_are_not_clipped_when_the_task_does_not_say_so(data_dir, recorder, clip_calls) -> None:
    assert get_task(IMAGE_TASK).optim.clip_grad_norm is None
    method = run(IMAGE_TASK, lr=0.05)
    assert clip_calls == []
    assert len(method.raw_norms) > 0 and method.seen_norms == method.raw_norms
    assert max(method.raw_norms) > 0.25  # a text task's clip would have changed these


# -- split names ------------------------------------------------------------------------------
def test_the_splits_are_val_and_test_and_a_typo_is_an_error() -> None:
    assert SPLITS == ("val", "test")
    assert [check_split(s) for s in SPLITS] == ["val", "test"]
    for typo in ("valid", "validation", "train", "VAL", "", "val "):
        with pytest.raises(UserError, match="unknown split"):
            check_split(typo)
