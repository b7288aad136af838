"""NASNet-A (the paper's CIFAR variant): exact size, cell layout, small trainable widths."""

from __future__ import annotations

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.paper.models import build_model
from mlrsnet.paper.models.nasnet import NormalCell, ReductionCell


def test_paper_scale_nasnet_has_the_papers_parameter_count(param_count):
    assert param_count(lambda: build_model("nasnet", 10)) == 5_126_494


def test_paper_scale_nasnet_takes_tinyimagenet_sized_inputs():
    # Shape-only forward on the meta device (32x32 is exercised by the small-width test).
    with torch.device("meta"):
        model = build_model("nasnet", 200)
        assert model(torch.empty(2, 3, 64, 64)).shape == (2, 200)


def test_paper_scale_nasnet_stacks_4_normal_cells_around_2_reduction_cells():
    with torch.device("meta"):
        model = build_model("nasnet", 10)
    kinds = ["R" if isinstance(c, ReductionCell) else "N" for c in model.cells]
    assert "".join(kinds) == "NNNNRNNNNRNNNN"
    assert all(isinstance(c, (NormalCell, ReductionCell)) for c in model.cells)
    assert model.classifier.in_features == 6 * 44 * 4


def test_small_nasnet_trains_on_cifar_sized_batches(train_step):
    # Each cell holds both ways of aligning its second input but uses at most one.
    logits = train_step(build_model("nasnet", 10, width=0.25, normal_repeats=1), 10, unused=".align.")
    assert logits.shape == (2, 10)


def test_small_nasnet_trains_on_tinyimagenet_sized_batches(train_step):
    model = build_model("nasnet", 200, width=0.2, normal_repeats=1, reduction_cells=1)
    logits = train_step(model, 200, size=64, unused=".align.")
    assert logits.shape == (2, 200)


def test_normal_repeats_must_be_positive():
    with pytest.raises(UserError, match="normal_repeats"):
        build_model("nasnet", 10, normal_repeats=0)
