"""The registry (``mlrsnet.paper.models.build_model``): names, keyword checks, readable errors."""

from __future__ import annotations

import pytest
from torch import nn

from mlrsnet.errors import UserError
from mlrsnet.paper.models import ARCHS, IMAGE_ARCHS, build_model, model_kwargs


def test_registry_offers_every_network_the_paper_trains():
    assert set(ARCHS) == {
        "resnet18",
        "wrn28_10",
        "shufflenetv2",
        "mobilenetv2",
        "nasnet",
        "efficientnet_b0",
        "efficientnet_b7",
        "lstm_lm",
    }
    assert set(IMAGE_ARCHS) == set(ARCHS) - {"lstm_lm"}


@pytest.mark.parametrize("arch", IMAGE_ARCHS)
def test_every_image_model_has_a_width_knob_defaulting_to_paper_scale(arch):
    assert model_kwargs(arch)["width"] == 1.0


def test_unknown_arch_is_a_user_error_listing_the_choices():
    with pytest.raises(UserError, match="unknown model 'resnet19'.*resnet18"):
        build_model("resnet19", 10)


def test_unknown_keyword_is_a_user_error_listing_the_accepted_ones():
    with pytest.raises(UserError, match="does not take 'widht'.*width"):
        build_model("resnet18", 10, widht=0.5)


def test_missing_required_keyword_is_a_user_error():
    with pytest.raises(UserError, match="needs 'num_layers'"):
        build_model("lstm_lm", 100, emb_size=8, hidden_size=8, dropout=0.0)


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), "half", True])
def test_non_positive_or_non_numeric_width_is_a_user_error(width):
    with pytest.raises(UserError, match="width"):
        build_model("mobilenetv2", 10, width=width)


@pytest.mark.parametrize("num_classes", [0, 2.5, "10"])
def test_invalid_num_classes_is_a_user_error(num_classes):
    with pytest.raises(UserError, match="num_classes"):
        build_model("resnet18", num_classes)


def test_build_model_returns_a_module_with_the_requested_outputs():
    model = build_model("shufflenetv2", 7, width=0.25)
    assert isinstance(model, nn.Module)
    assert model.classifier.out_features == 7
