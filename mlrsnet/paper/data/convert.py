"""Official release formats -> the arrays of a prepared ``.npz``.

One function per release format.  Each returns ``ImageArrays`` in the prepared layout:
uint8 (N,H,W,3) RGB images, int64 labels, class names in label order.  Nothing here
downloads or checks digests (that is :mod:`mlrsnet.paper.data.fetch`), so each converter can
be tested on a small file written in the official format.
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlrsnet.errors import UserError


@dataclass
class ImageArrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    def as_npz_dict(self) -> dict[str, np.ndarray]:
        return {"x_train": self.x_train, "y_train": self.y_train, "x_test": self.x_test,
                "y_test": self.y_test, "classes": np.array(self.classes, dtype=np.str_)}


# --- CIFAR-10 / CIFAR-100: python pickles inside a tar.gz -------------------------------

def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays only: a pickle cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: __import__("codecs").encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return factory()


def _load_batch(tar: tarfile.TarFile, member: str) -> dict[str, Any]:
    try:
        f = tar.extractfile(member)
    except KeyError as exc:
        raise UserError(f"{tar.name} has no member {member}: not the official CIFAR archive") from exc
    assert f is not None
    with f:
        # The official batches were pickled by Python 2; latin1 maps their byte
        # strings (keys and pixel buffers) one-to-one.
        try:
            batch = _ArrayOnlyUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            raise UserError(f"{member} in {tar.name} is not a plain CIFAR batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise UserError(f"{member} in {tar.name} is not a CIFAR batch (a dict of arrays)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _cifar_images(batches: list[dict[str, Any]], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # rows are CHW
    y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return x, y


def cifar_from_archive(archive: Path, name: str) -> ImageArrays:
    """``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` -> arrays, official order."""
    if name == "cifar10":
        folder, train, test = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"
        meta, names_key, label_key = "batches.meta", "label_names", "labels"
    elif name == "cifar100":
        folder, train, test = "cifar-100-python", ["train"], "test"
        meta, names_key, label_key = "meta", "fine_label_names", "fine_labels"
    else:
        raise ValueError(f"not a CIFAR dataset: {name}")
    with tarfile.open(archive, "r:gz") as tar:
        x_train, y_train = _cifar_images([_load_batch(tar, f"{folder}/{m}") for m in train], label_key)
        x_test, y_test = _cifar_images([_load_batch(tar, f"{folder}/{test}")], label_key)
        classes = [str(c) for c in _load_batch(tar, f"{folder}/{meta}")[names_key]]
    return ImageArrays(x_train, y_train, x_test, y_test, classes)


# --- SVHN: MATLAB files with X (32,32,3,N) and y (N,1), digit 0 stored as 10 -----------

def svhn_split_from_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(path, variable_names=["X", "y"])
    if "X" not in mat or "y" not in mat:
        raise UserError(f"{path} has no X/y arrays: not an official SVHN *_32x32.mat file")
    x = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
    y = np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.shape[1:] != (32, 32, 3) or y.shape[0] != x.shape[0]:
        raise UserError(f"{path}: X {mat['X'].shape} and y {mat['y'].shape} are not the "
                        f"SVHN layout (32,32,3,N) and (N,1)")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise UserError(f"{path}: labels outside 1..10, not the official SVHN encoding")
    y[y == 10] = 0  # the official files label the digit 0 as 10
    return x, y


def svhn_from_mats(train_mat: Path, test_mat: Path) -> ImageArrays:
    x_train, y_train = svhn_split_from_mat(train_mat)
    x_test, y_test = svhn_split_from_mat(test_mat)
    return ImageArrays(x_train, y_train, x_test, y_test, [str(d) for d in range(10)])


# --- Tiny ImageNet: JPEGs inside tiny-imagenet-200.zip ----------------------------------

_TRAIN_IMAGE = re.compile(r"(?:^|/)train/(?P<wnid>[^/]+)/images/(?P=wnid)_(?P<index>\d+)\.JPEG$")


def _decode_rgb(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)  # grayscale -> 3 equal channels


def _decode_all(zf: zipfile.ZipFile, members: list[str], what: str) -> np.ndarray:
    """Decode JPEG members into one preallocated (N,H,W,3) array (no list-then-stack copy)."""
    first = _decode_rgb(zf.read(members[0]))
    out = np.empty((len(members), *first.shape), dtype=np.uint8)
    out[0] = first
    for i, member in enumerate(members[1:], start=1):
        image = _decode_rgb(zf.read(member))
        if image.shape != first.shape:
            raise UserError(f"{member} is {image.shape}, other {what} images are {first.shape}: "
                            f"not the official release")
        out[i] = image
    return out


def tinyimagenet_from_zip(archive: Path) -> ImageArrays:
    """``tiny-imagenet-200.zip`` -> arrays.

    Classes are the 200 wnids sorted; train is every ``train/<wnid>/images`` JPEG,
    interleaved by class (k-th image of each class in turn, so any prefix is balanced);
    test is the official ``val`` split in ``val_annotations.txt`` order with its labels
    (the official test split has no public labels).
    """
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        annotations = [n for n in names if n.endswith("val/val_annotations.txt")]
        if len(annotations) != 1:
            raise UserError(f"{archive} has no single val/val_annotations.txt: "
                            f"not the official tiny-imagenet-200.zip")
        root = annotations[0][: -len("val/val_annotations.txt")]

        per_class: dict[str, list[tuple[int, str]]] = {}
        for n in names:
            match = _TRAIN_IMAGE.search(n)
            if match and n.startswith(root):
                per_class.setdefault(match["wnid"], []).append((int(match["index"]), n))
        classes = sorted(per_class)
        if f"{root}wnids.txt" in names:
            listed = sorted(zf.read(f"{root}wnids.txt").decode().split())
            if listed != classes:
                raise UserError(f"{archive}: wnids.txt lists {len(listed)} classes but train/ "
                                f"holds {len(classes)}; not the official release")
        if not classes:
            raise UserError(f"{archive} holds no train/<wnid>/images/*.JPEG files")
        label = {wnid: i for i, wnid in enumerate(classes)}

        ordered = {wnid: [n for _, n in sorted(per_class[wnid])] for wnid in classes}
        train_members: list[tuple[str, int]] = []
        for k in range(max(len(v) for v in ordered.values())):
            train_members += [(ordered[w][k], label[w]) for w in classes if k < len(ordered[w])]

        test_members: list[tuple[str, int]] = []
        for line in zf.read(annotations[0]).decode().splitlines():
            fields = line.split("\t")
            if len(fields) < 2:
                continue
            if fields[1] not in label:
                raise UserError(f"{archive}: val annotation {fields[0]} names unknown class {fields[1]}")
            test_members.append((f"{root}val/images/{fields[0]}", label[fields[1]]))

        if not test_members:
            raise UserError(f"{archive}: val_annotations.txt lists no images")
        x_train = _decode_all(zf, [n for n, _ in train_members], "train")
        x_test = _decode_all(zf, [n for n, _ in test_members], "val")
    y_train = np.array([y for _, y in train_members], dtype=np.int64)
    y_test = np.array([y for _, y in test_members], dtype=np.int64)
    return ImageArrays(x_train, y_train, x_test, y_test, classes)
