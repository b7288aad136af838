"""``prepare``: official release files -> prepared files, with digests checked by default.

Image releases are hundreds of MB and not available offline, so their converters are
exercised on small files written here in the exact official on-disk format (a MATLAB
file for SVHN, a zip of JPEGs for Tiny ImageNet, pickled batches in a tar.gz for CIFAR);
those runs pass ``verify=False``, and separate tests show that the default refuses them.
The text corpora are checked against their real official digests.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mlrsnet.errors import UserError
from mlrsnet.paper.data import ChecksumError, DownloadError, load_corpus, load_image_dataset, prepare
from mlrsnet.paper.data.sources import RAW_FILES, RawFile

# --- files in the official formats ----------------------------------------------------


def _svhn_images(n: int, seed: int) -> np.ndarray:
    """Distinct (32,32,3,n) uint8 images, laid out as in the official .mat files."""
    i = np.arange(32 * 32 * 3 * n, dtype=np.int64).reshape(32, 32, 3, n)
    return ((i * 7 + seed) % 251).astype(np.uint8)


def _write_svhn(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, labels in (("train", [10, 1, 9, 10, 5]), ("test", [3, 10])):
        X = _svhn_images(len(labels), seed=len(split))
        y = np.array(labels, dtype=np.uint8).reshape(-1, 1)
        savemat(folder / f"{split}_32x32.mat", {"X": X, "y": y})
        written[split] = (X, y)
    return written


WNIDS = ["n01629819", "n01443537", "n01641577"]  # wnids.txt is not sorted
COLOURS = {"n01443537": (220, 30, 30), "n01629819": (30, 220, 30), "n01641577": (30, 30, 220)}


def _jpeg(colour, mode: str = "RGB") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (64, 64), colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _write_tinyimagenet_zip(path: Path) -> None:
    root = "tiny-imagenet-200/"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(root + "wnids.txt", "\n".join(WNIDS) + "\n")
        zf.writestr(root + "words.txt", "".join(f"{w}\tthing {w}\n" for w in WNIDS))
        for wnid in WNIDS:
            # indices 2 and 10: numeric order puts _2 first, text order would not
            zf.writestr(f"{root}train/{wnid}/images/{wnid}_10.JPEG",
                        _jpeg(tuple(c // 2 for c in COLOURS[wnid])))
            zf.writestr(f"{root}train/{wnid}/images/{wnid}_2.JPEG", _jpeg(COLOURS[wnid]))
            zf.writestr(f"{root}train/{wnid}/{wnid}_boxes.txt", f"{wnid}_2.JPEG\t0\t0\t63\t63\n")
        val = [("val_0.JPEG", "n01641577"), ("val_1.JPEG", "n01443537"), ("val_2.JPEG", "n01629819")]
        for file, wnid in val:
            zf.writestr(f"{root}val/images/{file}", _jpeg(COLOURS[wnid]))
        zf.writestr(f"{root}val/images/val_3.JPEG", _jpeg(128, mode="L"))  # a grayscale image
        val.append(("val_3.JPEG", "n01443537"))
        zf.writestr(root + "val/val_annotations.txt",
                    "".join(f"{file}\t{wnid}\t0\t0\t63\t63\n" for file, wnid in val))
        zf.writestr(root + "test/images/test_0.JPEG", _jpeg((1, 2, 3)))  # unlabelled, ignored


def _cifar_rows(n: int, seed: int) -> np.ndarray:
    """n images as the official batches store them: one row of 3072 bytes, CHW order."""
    return ((np.arange(n * 3072).reshape(n, 3072) * 3 + seed) % 256).astype(np.uint8)


def _write_tar(path: Path, folder: str, members: dict[str, dict]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for member, content in members.items():
            data = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _write_cifar10_archive(path: Path) -> dict[str, dict]:
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    members = {f"data_batch_{i}": {"batch_label": f"training batch {i} of 5",
                                   "labels": [i, 9 - i], "data": _cifar_rows(2, i)}
               for i in range(1, 6)}
    members["test_batch"] = {"batch_label": "testing batch 1 of 1", "labels": [0, 7, 3],
                             "data": _cifar_rows(3, 99)}
    members["batches.meta"] = {"label_names": names, "num_cases_per_batch": 10000}
    _write_tar(path, "cifar-10-batches-py", members)
    return members


# --- SVHN -------------------------------------------------------------------------------

def test_svhn_from_official_mat_files_maps_label_10_to_digit_0(tmp_path):
    written = _write_svhn(tmp_path / "official")
    path = prepare("svhn", data_dir=tmp_path / "data", source=tmp_path / "official",
                   download=False, verify=False)
    assert path == tmp_path / "data" / "svhn.npz"
    ds = load_image_dataset("svhn", allow_mini=False, data_dir=tmp_path / "data")
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.y_train.tolist() == [0, 1, 9, 0, 5] and ds.y_test.tolist() == [3, 0]
    X, _ = written["train"]
    assert ds.x_train.shape == (5, 32, 32, 3) and ds.x_train.dtype == torch.uint8
    for k in range(5):  # image k is X[:, :, :, k], pixels unchanged
        assert torch.equal(ds.x_train[k], torch.from_numpy(X[:, :, :, k]))


def test_svhn_digests_are_checked_by_default(tmp_path):
    _write_svhn(tmp_path / "official")
    with pytest.raises(ChecksumError, match="e26dedcc434d2e4c54c9b2d4a06d8373"):
        prepare("svhn", data_dir=tmp_path / "data", source=tmp_path / "official", download=False)
    assert not (tmp_path / "data" / "svhn.npz").exists()


def test_svhn_offline_without_files_says_what_to_fetch_and_where(tmp_path):
    with pytest.raises(DownloadError) as info:
        prepare("svhn", data_dir=tmp_path / "data", download=False)
    message = str(info.value)
    assert "train_32x32.mat" in message and "http://ufldl.stanford.edu/housenumbers/" in message
    assert f"mlrsnet-bench data prepare svhn --data-dir {tmp_path / 'data'} --source FOLDER" in message


# --- Tiny ImageNet ----------------------------------------------------------------------

def test_tinyimagenet_from_official_zip_uses_sorted_wnids_and_val_labels(tmp_path):
    archive = tmp_path / "tiny-imagenet-200.zip"
    _write_tinyimagenet_zip(archive)
    prepare("tinyimagenet", data_dir=tmp_path / "data", source=archive, download=False, verify=False)
    # 3 classes of 2 images: read as prepared (loading it for training refuses a TinyImageNet
    # without its 200 classes)
    with np.load(tmp_path / "data" / "tinyimagenet.npz", allow_pickle=False) as npz:
        ds = SimpleNamespace(**{k: torch.from_numpy(npz[k]) for k in ("x_train", "y_train", "x_test", "y_test")},
                             classes=[str(c) for c in npz["classes"]])
    assert ds.classes == sorted(WNIDS)
    assert ds.x_train.shape == (6, 64, 64, 3) and ds.x_test.shape == (4, 64, 64, 3)
    # interleaved by class: the first (index 2) image of each class, then the second (index 10)
    assert ds.y_train.tolist() == [0, 1, 2, 0, 1, 2]
    for image, label, k in zip(ds.x_train, ds.y_train, range(6), strict=True):
        colour = np.array(COLOURS[ds.classes[label]]) // (1 if k < 3 else 2)
        assert np.abs(image.float().mean((0, 1)).numpy() - colour).max() < 4
    assert ds.y_test.tolist() == [2, 0, 1, 0]  # val_annotations.txt order and labels
    grey = ds.x_test[3]
    assert torch.equal(grey[..., 0], grey[..., 1]) and torch.equal(grey[..., 1], grey[..., 2])


def test_tinyimagenet_zip_digest_is_checked_by_default(tmp_path):
    _write_tinyimagenet_zip(tmp_path / "tiny-imagenet-200.zip")
    with pytest.raises(ChecksumError, match="90528d7ca1a48142e341f4ef8d21d0de"):
        prepare("tinyimagenet", data_dir=tmp_path / "data", source=tmp_path, download=False)


# --- CIFAR ------------------------------------------------------------------------------

def test_cifar10_from_official_archive_converts_chw_rows_to_hwc_images(tmp_path):
    members = _write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz")
    prepare("cifar10", data_dir=tmp_path / "data", source=tmp_path, download=False, verify=False)
    ds = load_image_dataset("cifar10", allow_mini=False, data_dir=tmp_path / "data")
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert ds.y_train.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]  # batches 1..5 in order
    assert ds.y_test.tolist() == [0, 7, 3]
    row = members["data_batch_2"]["data"][1]  # 4th training image
    image = ds.x_train[3].numpy()
    for r, c, ch in ((0, 0, 0), (5, 17, 1), (31, 30, 2)):
        assert image[r, c, ch] == row[ch * 1024 + r * 32 + c]


def test_cifar100_from_official_archive_uses_fine_labels_and_names(tmp_path):
    fine_names = [f"class{i:02d}" for i in range(100)]
    _write_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", {
        "train": {"fine_labels": [99, 0, 42], "coarse_labels": [1, 2, 3], "data": _cifar_rows(3, 1)},
        "test": {"fine_labels": [7], "coarse_labels": [0], "data": _cifar_rows(1, 2)},
        "meta": {"fine_label_names": fine_names, "coarse_label_names": ["c"] * 20},
    })
    prepare("cifar100", data_dir=tmp_path / "data", source=tmp_path, download=False, verify=False)
    ds = load_image_dataset("cifar100", allow_mini=False, data_dir=tmp_path / "data")
    assert ds.classes == fine_names
    assert ds.y_train.tolist() == [99, 0, 42] and ds.y_test.tolist() == [7]
    assert ds.x_train.shape == (3, 32, 32, 3) and ds.x_test.shape == (1, 32, 32, 3)


def test_cifar_batches_that_would_run_code_are_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        data = pickle.dumps({"data": Exploit()}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(UserError, match="not a plain CIFAR batch"):
        prepare("cifar10", data_dir=tmp_path / "data", source=tmp_path, download=False, verify=False)


# --- text corpora (real files, real digests) --------------------------------------------

def test_ptb_from_official_files_passes_the_official_md5_and_copies_bytes(shared_data, tmp_path):
    folder = prepare("ptb", data_dir=tmp_path, source=shared_data / "ptb", download=False)
    assert folder == tmp_path / "ptb"
    for split in ("train", "valid", "test"):
        assert (folder / f"{split}.txt").read_bytes() == (shared_data / "ptb" / f"{split}.txt").read_bytes()
    assert load_corpus("ptb", data_dir=tmp_path).vocab_size == 10_000


def test_a_tampered_ptb_file_fails_the_checksum(shared_data, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for split in ("train", "valid", "test"):
        data = (shared_data / "ptb" / f"{split}.txt").read_bytes()
        (source / f"ptb.{split}.txt").write_bytes(data.replace(b" the ", b" teh ", 1) if split == "valid" else data)
    with pytest.raises(ChecksumError, match="ptb.valid.txt"):
        prepare("ptb", data_dir=tmp_path / "data", source=source, download=False)


def test_wikitext2_from_loose_token_files_is_checked_against_their_sha256(shared_data, tmp_path):
    folder = prepare("wikitext-2", data_dir=tmp_path, source=shared_data / "wikitext-2", download=False)
    assert (folder / "valid.txt").read_bytes() == (shared_data / "wikitext-2" / "valid.txt").read_bytes()


def test_wikitext2_from_the_official_zip_layout(shared_data, tmp_path):
    with zipfile.ZipFile(tmp_path / "wikitext-2-v1.zip", "w") as zf:
        for split in ("train", "valid", "test"):
            zf.write(shared_data / "wikitext-2" / f"{split}.txt", f"wikitext-2/wiki.{split}.tokens")
    folder = prepare("wikitext-2", data_dir=tmp_path / "data", source=tmp_path / "wikitext-2-v1.zip",
                     download=False, verify=False)
    assert (folder / "test.txt").read_bytes() == (shared_data / "wikitext-2" / "test.txt").read_bytes()


# --- downloading --------------------------------------------------------------------------

def _ptb_mirrors(shared_data: Path, tmp_path: Path) -> tuple[RawFile, ...]:
    """The official PTB entries, with a dead mirror first and a local file:// copy second."""
    return tuple(RawFile(raw.filename, ((tmp_path / "dead" / raw.filename).as_uri(),
                                        (shared_data / "ptb" / raw.filename.split(".", 1)[1]).as_uri()),
                         raw.algorithm, raw.digest)
                 for raw in RAW_FILES["ptb"])


def test_download_tries_each_mirror_verifies_and_caches(shared_data, tmp_path, monkeypatch):
    monkeypatch.setitem(RAW_FILES, "ptb", _ptb_mirrors(shared_data, tmp_path))
    prepare("ptb", data_dir=tmp_path / "data")
    cached = tmp_path / "data" / "raw" / "ptb" / "ptb.train.txt"
    assert cached.read_bytes() == (shared_data / "ptb" / "train.txt").read_bytes()
    # a second prepare needs no network: the verified cache serves
    prepare("ptb", data_dir=tmp_path / "data", download=False)
    assert load_corpus("ptb", data_dir=tmp_path / "data").train.numel() == 929_589


def test_a_download_with_the_wrong_digest_is_not_kept(shared_data, tmp_path, monkeypatch):
    good = _ptb_mirrors(shared_data, tmp_path)
    bad = (RawFile(good[0].filename, good[0].urls, "md5", "0" * 32), *good[1:])
    monkeypatch.setitem(RAW_FILES, "ptb", bad)
    with pytest.raises(ChecksumError):
        prepare("ptb", data_dir=tmp_path / "data")
    assert not (tmp_path / "data" / "raw" / "ptb" / "ptb.train.txt").exists()


def test_unreachable_mirrors_give_the_manual_fetch_instructions(tmp_path, monkeypatch):
    dead = RawFile("ptb.train.txt", ((tmp_path / "nowhere.txt").as_uri(),), "md5", "0" * 32)
    monkeypatch.setitem(RAW_FILES, "ptb", (dead,) * 3)
    with pytest.raises(DownloadError, match="Fetch it by hand from file://"):
        prepare("ptb", data_dir=tmp_path / "data")


def test_unknown_dataset_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="known: cifar10"):
        prepare("imagenet", data_dir=tmp_path)
