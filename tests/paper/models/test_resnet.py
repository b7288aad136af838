"""CIFAR ResNet-18: the paper's exact size, and small widths that train on CPU."""

from __future__ import annotations

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.paper.models import build_model


@pytest.mark.parametrize(("num_classes", "expected"), [(10, 11_173_962), (100, 11_220_132)])
def test_paper_scale_resnet18_has_the_papers_parameter_count(param_count, num_classes, expected):
    assert param_count(lambda: build_model("resnet18", num_classes)) == expected


def test_paper_scale_resnet18_maps_32_and_64_pixel_inputs_to_class_logits():
    # Shape-only forward on the meta device: the full network, no arithmetic.
    with torch.device("meta"):
        model = build_model("resnet18", 200)
        assert model(torch.empty(2, 3, 32, 32)).shape == (2, 200)
        assert model(torch.empty(2, 3, 64, 64)).shape == (2, 200)


def test_small_resnet18_trains_on_cifar_sized_batches(train_step):
    logits = train_step(build_model("resnet18", 10, width=0.125), 10)
    assert logits.shape == (2, 10)


def test_small_resnet18_trains_on_tinyimagenet_sized_batches(train_step):
    logits = train_step(
        build_model("resnet18", 200, width=0.125, blocks_per_stage=(1, 1, 1, 1)), 200, size=64
    )
    assert logits.shape == (2, 200)


def test_width_scales_every_stage_and_blocks_per_stage_sets_depth():
    model = build_model("resnet18", 10, width=0.25, blocks_per_stage=(1, 2, 1, 3))
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)] == [1, 2, 1, 3]
    assert model.conv1.out_channels == 16
    assert model.linear.in_features == 128


@pytest.mark.parametrize("blocks", [(2, 2, 2), (2, 0, 2, 2)])
def test_malformed_blocks_per_stage_is_a_user_error(blocks):
    with pytest.raises(UserError, match="blocks_per_stage"):
        build_model("resnet18", 10, blocks_per_stage=blocks)


def test_stem_stride_two_halves_the_maps_the_first_stage_sees():
    seen = {}
    model = build_model("resnet18", 200, width=0.0625, stem_stride=2)
    model.layer1.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 200)
    assert seen["shape"][-2:] == (32, 32)


def test_stem_stride_must_be_a_positive_count():
    with pytest.raises(UserError, match="stem_stride"):
        build_model("resnet18", 10, stem_stride=0)
