"""Loading prepared image files and normalising them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.paper.data import IMAGE_DATASETS, NORMALIZATION, load_image_dataset, to_float


def test_cifar10_mini_loads_5000_train_1000_test_images_of_10_classes(shared_data):
    ds = load_image_dataset("cifar10", allow_mini=True, data_dir=shared_data)
    assert ds.source == shared_data / "cifar10-mini.npz" and ds.is_mini
    assert ds.x_train.shape == (5000, 32, 32, 3) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (1000, 32, 32, 3) and ds.x_test.dtype == torch.uint8
    assert ds.y_train.dtype == torch.int64 and ds.y_test.dtype == torch.int64
    assert ds.classes[:3] == ["airplane", "automobile", "bird"] and ds.num_classes == 10
    assert torch.bincount(ds.y_train).tolist() == [500] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10


def test_tinyimagenet_mini_has_200_wnid_classes_of_64px_images(shared_data):
    ds = load_image_dataset("tinyimagenet", allow_mini=True, data_dir=shared_data)
    assert ds.x_train.shape == (4000, 64, 64, 3) and ds.x_test.shape == (1000, 64, 64, 3)
    assert ds.classes == sorted(ds.classes) and len(ds.classes) == 200
    assert ds.classes[0] == "n01443537"


def test_every_image_dataset_has_normalisation_statistics():
    for name in IMAGE_DATASETS:
        mean, std = NORMALIZATION[name]
        assert len(mean) == len(std) == 3 and all(s > 0 for s in std)


def test_normalised_cifar10_is_centred(shared_data):
    ds = load_image_dataset("cifar10", allow_mini=True, data_dir=shared_data)
    x = to_float(ds.x_train[:2000], *NORMALIZATION["cifar10"])
    assert x.abs().mean() > 0.5  # not all zeros
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.05


def test_to_float_is_nchw_of_pixel_over_255_minus_mean_over_std():
    x = torch.tensor([[[[0, 128, 255], [10, 20, 30]]]], dtype=torch.uint8)  # (1,1,2,3)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    out = to_float(x, mean, std)
    assert out.shape == (1, 3, 1, 2) and out.dtype == torch.float32 and out.is_contiguous()
    expected = (x.permute(0, 3, 1, 2).double() / 255 - torch.tensor(mean).double().view(1, 3, 1, 1)) \
        / torch.tensor(std).double().view(1, 3, 1, 1)
    assert (out.double() - expected).abs().max() < 1e-6


def test_to_float_rejects_float_input():
    with pytest.raises(ValueError):
        to_float(torch.zeros(1, 4, 4, 3), (0, 0, 0), (1, 1, 1))


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_file_missing_arrays_is_a_user_error_naming_the_fix(tmp_path):
    _write(tmp_path / "cifar10.npz", x_train=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(UserError) as info:
        load_image_dataset("cifar10", allow_mini=False, data_dir=tmp_path)
    assert "y_train" in str(info.value) and "mlrsnet-bench data prepare cifar10" in str(info.value)


def test_labels_out_of_range_are_rejected(tmp_path):
    x = np.zeros((2, 4, 4, 3), np.uint8)
    _write(tmp_path / "cifar10.npz", x_train=x, y_train=np.array([0, 5]), x_test=x,
           y_test=np.array([0, 1]), classes=np.array(["a", "b"]))
    with pytest.raises(UserError, match="labels outside"):
        load_image_dataset("cifar10", allow_mini=False, data_dir=tmp_path)


def test_a_pickled_array_is_refused_not_unpickled(tmp_path):
    x = np.zeros((2, 4, 4, 3), np.uint8)
    _write(tmp_path / "cifar10.npz", x_train=x, y_train=np.array([0, 1]), x_test=x,
           y_test=np.array([0, 1]), classes=np.array(["a", object()], dtype=object))
    with pytest.raises(UserError, match="cannot be read"):
        load_image_dataset("cifar10", allow_mini=False, data_dir=tmp_path)
