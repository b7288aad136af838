"""The held-out part of an image training split: a count or a share, disjoint from the
training images (the paper's description) or overlapping them as the official code draws it.

References are computed here from the ``.npz`` with numpy: which training images a workload
holds out and which it trains on, compared by their pixels.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.harness.registry import get_task
from mlrsnet.paper.workloads import make_workload

CPU = torch.device("cpu")
TASK = "resnet18-cifar10"


def workload(data_dir: Path, **fields):
    task = get_task(TASK)
    return make_workload(task, replace(task.profile("mini"), train_size=None, **fields), CPU, str(data_dir))


def rows(images: torch.Tensor) -> set[bytes]:
    return {x.tobytes() for x in images.numpy()}


def test_a_share_holds_out_that_fraction_of_the_training_split(data_dir) -> None:
    n = len(np.load(data_dir / "cifar10-mini.npz")["y_train"])
    w = workload(data_dir, holdout=0.02)
    assert w.sizes["val"] == round(0.02 * n) == len(w.y_held)
    assert np.bincount(w.y_held.numpy(), minlength=10).tolist() == [round(0.02 * n) // 10] * 10
    with pytest.raises(UserError, match=r"share of the training split is a number in \(0, 1\)"):
        workload(data_dir, holdout=1.5)


def test_disjoint_holds_out_images_it_never_trains_on(data_dir) -> None:
    w = workload(data_dir, holdout=1000)
    assert not rows(w.x_held) & rows(w.x_train)
    assert len(w.y_train) + len(w.y_held) == len(np.load(data_dir / "cifar10-mini.npz")["y_train"])


def test_overlap_draws_the_training_set_independently_as_the_official_code(data_dir) -> None:
    """Two class-balanced draws, as ``build_dataset`` builds its meta and training sets: the
    training set keeps its size, and a held-out image is trained on with probability
    (per-class images - per-class share) / per-class images = 4,000 / 5,000 here."""
    disjoint, overlap = workload(data_dir, holdout=1000), workload(data_dir, holdout=1000, holdout_mode="overlap")
    assert torch.equal(overlap.y_held, disjoint.y_held) and torch.equal(overlap.x_held, disjoint.x_held)
    assert len(overlap.y_train) == len(disjoint.y_train) == 4000
    shared = len(rows(overlap.x_held) & rows(overlap.x_train)) / len(overlap.y_held)
    assert 0.75 <= shared <= 0.85  # 0.8 expected; about 0.98 at the paper's 1,000 of 50,000
    assert np.bincount(overlap.y_train.numpy(), minlength=10).tolist() == [400] * 10
