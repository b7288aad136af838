"""Fig. 4 at paper scale fine-tunes ImageNet-pretrained EfficientNets
(:mod:`mlrsnet.paper.models.pretrained`).

No weights can be downloaded here: the offline error is checked against an unreachable
address, and the loading path against a weights file written here and served from a
``file://`` URL whose name carries its own sha256 prefix, as torchvision's files do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

import mlrsnet.paper.models.pretrained as pretrained
from mlrsnet.errors import UserError
from mlrsnet.harness.registry import get_task
from mlrsnet.paper.models import build_model
from mlrsnet.paper.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, ImageNetInput, load_pretrained


def served_weights(tmp_path: Path, state: dict, tamper: bool = False) -> str:
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    served = tmp_path / "served" / f"efficientnet_b0_test-{digest[:8]}.pth"
    served.parent.mkdir()
    data = raw.read_bytes()
    served.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if tamper else data)
    return served.as_uri()


@pytest.fixture
def imagenet_like() -> dict:
    """torchvision's B0 with 1,000 classes, weights drawn from a fixed seed (a stand-in for
    the real file: same names and shapes)."""
    torch.manual_seed(0)
    return torchvision.models.efficientnet_b0(weights=None, num_classes=1000).state_dict()


def test_the_weights_load_into_the_model_but_its_new_classifier(tmp_path, imagenet_like, monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "weights_url", lambda arch, source: served_weights(tmp_path, imagenet_like))
    model = build_model("efficientnet_b0", num_classes=100, stem_stride=2)
    head_before = model.classifier[1].weight.clone()
    load_pretrained(model, "efficientnet_b0", "imagenet", tmp_path / "cache")
    for name, value in model.state_dict().items():
        if name.startswith("classifier"):
            continue
        assert torch.equal(value, imagenet_like[name]), name
    assert torch.equal(model.classifier[1].weight, head_before) and model.classifier[1].out_features == 100
    assert list((tmp_path / "cache").glob("efficientnet_b0_test-*.pth"))  # kept for the next run


def test_a_damaged_download_is_refused(tmp_path, imagenet_like, monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "weights_url", lambda arch, source: served_weights(tmp_path, imagenet_like, True))
    with pytest.raises(UserError, match="fail their check"):
        load_pretrained(build_model("efficientnet_b0", num_classes=100), "efficientnet_b0", "imagenet", tmp_path / "c")


def test_offline_the_error_names_the_file_and_where_to_get_it(tmp_path, monkeypatch) -> None:
    url = "http://127.0.0.1:9/efficientnet_b0_rwightman-7f5810bc.pth"
    monkeypatch.setattr(pretrained, "weights_url", lambda arch, source: url)
    with pytest.raises(UserError) as err:
        load_pretrained(build_model("efficientnet_b0", num_classes=100), "efficientnet_b0", "imagenet", tmp_path)
    assert url in str(err.value) and str(tmp_path) in str(err.value) and "profile" in str(err.value)


def test_the_real_urls_are_torchvisions_imagenet_weights() -> None:
    assert pretrained.weights_url("efficientnet_b0", "imagenet").endswith("efficientnet_b0_rwightman-7f5810bc.pth")
    assert pretrained.weights_url("efficientnet_b7", "imagenet").endswith("efficientnet_b7_lukemelas-c5b4e57e.pth")
    with pytest.raises(UserError, match="only pretrained source"):
        pretrained.weights_url("efficientnet_b0", "places365")


def test_cifar_images_reach_the_network_imagenet_normalised_at_224() -> None:
    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)  # CIFAR-100's
    adapt = ImageNetInput(mean, std, 224)
    pixels = torch.rand(2, 3, 32, 32)
    cifar_normalised = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = adapt(cifar_normalised)
    assert out.shape == (2, 3, 224, 224)
    expected = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = torch.nn.functional.interpolate(expected, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected, atol=1e-5)
    assert not list(adapt.parameters())


def test_the_paper_profiles_fine_tune_and_the_small_ones_train_from_scratch() -> None:
    for name in ("efficientnet_b0-cifar100", "efficientnet_b7-cifar100"):
        task = get_task(name)
        assert task.profile("paper").model_kwargs == {"pretrained": "imagenet", "input_size": 224, "stem_stride": 2}
        for small in ("smoke", "mini", "cpu"):
            assert "pretrained" not in task.profile(small).model_kwargs
