"""MobileNetV2 (the paper's CIFAR variant): exact size and small trainable widths."""

from __future__ import annotations

import torch

from mlrsnet.paper.models import build_model


def test_paper_scale_mobilenetv2_has_the_papers_parameter_count(param_count):
    assert param_count(lambda: build_model("mobilenetv2", 10)) == 2_254_090


def test_paper_scale_mobilenetv2_takes_tinyimagenet_sized_inputs():
    # Shape-only forward on the meta device (32x32 is exercised by the small-width test).
    with torch.device("meta"):
        model = build_model("mobilenetv2", 200)
        assert model(torch.empty(2, 3, 64, 64)).shape == (2, 200)


def test_small_mobilenetv2_trains_on_cifar_sized_batches(train_step):
    logits = train_step(build_model("mobilenetv2", 10, width=0.25, depth=0.34), 10)
    assert logits.shape == (2, 10)


def test_depth_multiplier_rounds_repeats_up_and_width_shrinks_the_head():
    full = build_model("mobilenetv2", 10)
    small = build_model("mobilenetv2", 10, width=0.5, depth=0.5)
    assert len(full.blocks) == 17
    assert len(small.blocks) == 1 + 1 + 2 + 2 + 2 + 2 + 1
    assert small.classifier.in_features == 640
