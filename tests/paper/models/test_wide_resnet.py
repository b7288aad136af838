"""WideResNet: WRN-28-10 at the paper's size, the general depth/width family, dropout."""

from __future__ import annotations

import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.paper.models import build_model
from mlrsnet.paper.models.wide_resnet import wide_resnet


def test_paper_scale_wrn28_10_has_the_papers_parameter_count(param_count):
    assert param_count(lambda: build_model("wrn28_10", 100)) == 36_536_884


def test_wrn28_10_preset_equals_the_general_builder(param_count):
    assert param_count(lambda: wide_resnet(100, depth=28, widen_factor=10)) == 36_536_884


def test_paper_scale_wrn_maps_32_and_64_pixel_inputs_to_class_logits():
    with torch.device("meta"):
        model = build_model("wrn28_10", 100)
        assert model(torch.empty(2, 3, 32, 32)).shape == (2, 100)
        assert model(torch.empty(2, 3, 64, 64)).shape == (2, 100)


def test_depth_sets_blocks_per_stage():
    model = build_model("wrn28_10", 10, depth=16, widen_factor=1)
    assert [len(s) for s in (model.stage1, model.stage2, model.stage3)] == [2, 2, 2]


def test_small_wide_resnet_trains_on_cifar_sized_batches(train_step):
    logits = train_step(build_model("wrn28_10", 100, depth=10, widen_factor=1, width=0.5), 100)
    assert logits.shape == (2, 100)


def test_dropout_makes_training_forward_passes_stochastic_and_eval_deterministic():
    model = build_model("wrn28_10", 10, depth=10, widen_factor=1, dropout=0.5)
    images = torch.randn(2, 3, 32, 32)
    model.train()
    assert not torch.equal(model(images), model(images))
    model.eval()
    assert torch.equal(model(images), model(images))


@pytest.mark.parametrize("kwargs", [{"depth": 27}, {"depth": 4}, {"dropout": 1.0}, {"widen_factor": 0}])
def test_invalid_wide_resnet_shapes_are_user_errors(kwargs):
    with pytest.raises(UserError):
        build_model("wrn28_10", 10, **kwargs)
