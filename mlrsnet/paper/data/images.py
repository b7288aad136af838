"""Prepared image datasets: one ``.npz`` per dataset, loaded whole into uint8 tensors.

Keeping images as uint8 NHWC until the batch is on the training device makes a
CIFAR-sized dataset cost 150 MB instead of 600 MB and lets augmentation run batched on
the GPU (:mod:`mlrsnet.paper.data.augment`) instead of per image in PIL worker processes.
"""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mlrsnet.errors import UserError
from mlrsnet.paper.data.locate import PathLike, find_image_file, prepare_command

#: Per-channel mean and std (of pixel/255) used to normalise each dataset.  CIFAR values
#: are the ones in the official MLR-SNet code (its CIFAR-10 std is the widely copied
#: (0.2023, 0.1994, 0.2010), kept for fidelity); SVHN uses (0.5, 0.5, 0.5) as the official
#: meta-test script does; Tiny ImageNet uses its published per-pixel training statistics.
NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "svhn": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
}

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")

#: What each dataset is: its number of classes and its images' height and width (the
#: official releases; a prepared file, or its ``-mini`` subset, must match them, so a file
#: with 3 classes or 1x1 images is not trained on as CIFAR-10).
IMAGE_FACTS: dict[str, tuple[int, tuple[int, int]]] = {
    "cifar10": (10, (32, 32)),
    "cifar100": (100, (32, 32)),
    "svhn": (10, (32, 32)),
    "tinyimagenet": (200, (64, 64)),
}


@dataclass
class ImageDataset:
    """A whole image dataset in memory: uint8 NHWC images, int64 labels."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: list[str]
    name: str
    source: Path

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_mini(self) -> bool:
        return self.source.name.endswith("-mini.npz")


def load_image_dataset(name: str, *, allow_mini: bool,
                       data_dir: PathLike | None = None) -> ImageDataset:
    """Load the prepared file that :func:`find_image_file` picks for ``name``."""
    path = find_image_file(name, allow_mini=allow_mini, data_dir=data_dir)
    arrays = read_npz(path, name, data_dir)
    return ImageDataset(
        x_train=torch.from_numpy(arrays["x_train"]),
        y_train=torch.from_numpy(arrays["y_train"]),
        x_test=torch.from_numpy(arrays["x_test"]),
        y_test=torch.from_numpy(arrays["y_test"]),
        classes=[str(c) for c in arrays["classes"]],
        name=name,
        source=path,
    )


def read_npz(path: Path, name: str, data_dir: PathLike | None = None) -> dict[str, np.ndarray]:
    """Read and validate a prepared file; never unpickles (``allow_pickle=False``)."""
    fix = f"delete it and run `{prepare_command(name, data_dir)}`"
    if path.is_file() and not zipfile.is_zipfile(path):  # np.load would call it "pickled data"
        raise UserError(f"{path} is not a .npz archive (damaged, truncated or another kind of "
                        f"file, {path.stat().st_size} bytes); {fix}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise UserError(f"{path} is not a prepared dataset file (no {', '.join(missing)}); "
                                f"{fix}.")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path} cannot be read as a prepared dataset ({exc}); {fix}.") from exc
    problem = layout_problem(arrays) or dataset_problem(arrays, name)
    if problem:
        raise UserError(f"{path} does not have the prepared layout: {problem}; {fix}.")
    return arrays


def dataset_problem(a: dict[str, np.ndarray], name: str) -> str | None:
    """How arrays of the prepared layout differ from dataset ``name`` (:data:`IMAGE_FACTS`:
    its number of classes and image size), or ``None``."""
    if name not in IMAGE_FACTS:
        return None
    classes, size = IMAGE_FACTS[name]
    if len(a["classes"]) != classes:
        return f"it lists {len(a['classes'])} classes where {name} has {classes}"
    got = tuple(a["x_train"].shape[1:3])
    if got != size:
        return f"its images are {got[0]}x{got[1]} pixels where {name}'s are {size[0]}x{size[1]}"
    return None


def layout_problem(a: dict[str, np.ndarray]) -> str | None:
    """What is wrong with arrays meant for a prepared file, or ``None`` if nothing."""
    for split in ("train", "test"):
        x, y = a[f"x_{split}"], a[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
            return f"x_{split} is {x.dtype} {x.shape}, expected uint8 (N,H,W,3)"
        if y.dtype != np.int64 or y.shape != (x.shape[0],):
            return f"y_{split} is {y.dtype} {y.shape}, expected int64 ({x.shape[0]},)"
        if y.size and (y.min() < 0 or y.max() >= len(a["classes"])):
            return f"y_{split} holds labels outside 0..{len(a['classes']) - 1}"
    if a["x_train"].shape[1:] != a["x_test"].shape[1:]:
        return "train and test images differ in size"
    if a["classes"].ndim != 1 or a["classes"].dtype.kind != "U":
        return "classes is not a 1-d array of strings"
    return None


@functools.lru_cache(maxsize=32)
def _cached_channels(values: tuple[float, ...], device: torch.device) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def _channel_tensor(values: Sequence[float] | Tensor, device: torch.device) -> Tensor:
    """Per-channel constants on ``device``, built once per (values, device): building them
    from a tuple on every call was a host-to-device copy per batch on a GPU."""
    if isinstance(values, Tensor):
        return values.to(device=device, dtype=torch.float32).view(1, -1, 1, 1)
    return _cached_channels(tuple(float(v) for v in values), torch.device(device))


def to_float(x_uint8_nhwc: Tensor, mean: Sequence[float] | Tensor,
             std: Sequence[float] | Tensor) -> Tensor:
    """uint8 NHWC pixels -> normalised float32 NCHW, ``(x/255 - mean) / std``.

    The same arithmetic as torchvision's ``ToTensor`` + ``Normalize``, on a whole batch.
    """
    if x_uint8_nhwc.dtype != torch.uint8 or x_uint8_nhwc.dim() != 4:
        raise ValueError(f"expected a uint8 (N,H,W,C) batch, got {x_uint8_nhwc.dtype} "
                         f"{tuple(x_uint8_nhwc.shape)}")
    n, h, w, c = x_uint8_nhwc.shape
    device = x_uint8_nhwc.device
    # One pass converts and reorders (copy_ into an NCHW float buffer), then in place.
    x = torch.empty((n, c, h, w), dtype=torch.float32, device=device)
    x.copy_(x_uint8_nhwc.permute(0, 3, 1, 2)).div_(255.0)
    return x.sub_(_channel_tensor(mean, device)).div_(_channel_tensor(std, device))
