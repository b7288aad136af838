"""ShuffleNetV2 (the paper's CIFAR variant): exact size, channel shuffle, small widths."""

from __future__ import annotations

import torch

from mlrsnet.paper.models import build_model
from mlrsnet.paper.models.shufflenetv2 import channel_shuffle


def test_paper_scale_shufflenetv2_has_the_papers_parameter_count(param_count):
    assert param_count(lambda: build_model("shufflenetv2", 10)) == 1_268_646


def test_paper_scale_shufflenetv2_takes_tinyimagenet_sized_inputs():
    # Shape-only forward on the meta device (32x32 is exercised by the small-width test).
    with torch.device("meta"):
        model = build_model("shufflenetv2", 200)
        assert model(torch.empty(2, 3, 64, 64)).shape == (2, 200)


def test_channel_shuffle_interleaves_the_two_halves():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_small_shufflenetv2_trains_on_cifar_sized_batches(train_step):
    logits = train_step(build_model("shufflenetv2", 10, width=0.25, depth=0.34), 10)
    assert logits.shape == (2, 10)


def test_any_width_gives_even_stage_channels_so_units_can_split_in_halves(train_step):
    model = build_model("shufflenetv2", 10, width=0.3, depth=0.1)
    # 116, 232, 464 x 0.3 = 34.8, 69.6, 139.2 -> nearest even numbers.
    assert [stage[1].branch[0].in_channels * 2 for stage in model.stages] == [34, 70, 140]
    assert train_step(model, 10).shape == (2, 10)
