"""EfficientNet-B0/-B7: torchvision's exact networks, a stride-1 stem for 32x32, small variants."""

from __future__ import annotations

import pytest
import torch
import torchvision

from mlrsnet.paper.models import build_model


@pytest.mark.parametrize(
    ("arch", "expected"), [("efficientnet_b0", 4_135_648), ("efficientnet_b7", 64_043_060)]
)
def test_paper_scale_efficientnet_has_the_papers_parameter_count(param_count, arch, expected):
    assert param_count(lambda: build_model(arch, 100)) == expected


@pytest.mark.parametrize("arch", ["efficientnet_b0", "efficientnet_b7"])
def test_paper_scale_efficientnet_is_torchvisions_network_with_a_stride_1_stem(arch):
    with torch.device("meta"):
        ours = build_model(arch, 100)
        reference = getattr(torchvision.models, arch)(weights=None, num_classes=100)
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: v.shape for k, v in reference.state_dict().items()}
    assert reference.features[0][0].stride == (2, 2)
    assert ours.features[0][0].stride == (1, 1)
    # Same BatchNorm settings and classifier dropout as torchvision's factory.
    assert ours.features[1][0].block[0][1].eps == reference.features[1][0].block[0][1].eps
    assert ours.classifier[0].p == reference.classifier[0].p


@pytest.mark.parametrize(("size", "last_map"), [(32, 2), (64, 4)])
def test_stride_1_stem_leaves_a_spatial_map_before_the_global_pool(size, last_map):
    with torch.device("meta"):
        model = build_model("efficientnet_b0", 100)
        seen = []
        model.features.register_forward_hook(lambda module, args, out: seen.append(out.shape))
        assert model(torch.empty(2, 3, size, size)).shape == (2, 100)
    assert seen[0][-2:] == (last_map, last_map)


@pytest.mark.parametrize("arch", ["efficientnet_b0", "efficientnet_b7"])
def test_small_efficientnet_trains_on_cifar_sized_batches(train_step, arch):
    model = build_model(arch, 100, width=0.25 if arch.endswith("b0") else 0.125, depth=0.2)
    assert train_step(model, 100).shape == (2, 100)


def test_width_and_depth_scale_like_torchvisions_compound_multipliers(param_count):
    # B7's multipliers (2.0, 3.1) times width 0.5 and depth 1/3.1 give B0's stage table.
    b7_as_b0 = param_count(lambda: build_model("efficientnet_b7", 100, width=0.5, depth=1 / 3.1))
    assert b7_as_b0 == param_count(lambda: build_model("efficientnet_b0", 100))
