"""``mlrsnet-bench data prepare NAME``: official release -> the prepared file the loaders read.

The output goes into the first data folder (:func:`~mlrsnet.paper.data.locate.data_dirs`), so
the next lookup with the same ``--data-dir`` finds it; downloads are cached under
``<data dir>/raw/<name>/``.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlrsnet.errors import UserError
from mlrsnet.paper.data import convert
from mlrsnet.paper.data.fetch import ChecksumError, atomic_output, obtain, verify_file
from mlrsnet.paper.data.images import layout_problem
from mlrsnet.paper.data.locate import CORPORA, CORPUS_SPLITS, IMAGE_DATASETS, PathLike, data_dirs
from mlrsnet.paper.data.sources import CORPUS_LINES, RAW_FILES, WIKITEXT2_TOKENS_SHA256

log = logging.getLogger(__name__)

KNOWN = IMAGE_DATASETS + CORPORA


def prepare(name: str, data_dir: PathLike | None = None, *, source: Path | None = None,
            download: bool = True, verify: bool = True) -> Path:
    """Build the prepared file (images) or folder (text) for ``name``; returns its path.

    ``source``: a folder holding the official files (or the single archive itself), for
    machines without network.  ``download``: whether mirrors may be tried when neither
    ``source`` nor the cache has the file.  ``verify``: check official digests; turn off
    only for hand-made test files in the official format.
    """
    if name not in KNOWN:
        raise UserError(f"Unknown dataset '{name}'; known: {', '.join(KNOWN)}.")
    target = data_dirs(data_dir)[0]
    src = Path(source).expanduser() if source is not None else None

    def get(index: int = 0, alternatives: tuple[str, ...] = ()) -> Path:
        return obtain(name, RAW_FILES[name][index], source=src, cache_dir=target / "raw" / name,
                      download=download, verify=verify, data_dir=data_dir,
                      alternatives=alternatives)

    if name in ("cifar10", "cifar100"):
        arrays = convert.cifar_from_archive(get(), name)
    elif name == "svhn":
        arrays = convert.svhn_from_mats(get(0), get(1))
    elif name == "tinyimagenet":
        arrays = convert.tinyimagenet_from_zip(get())
    elif name == "ptb":
        texts = {split: get(i, (f"{split}.txt",)) for i, split in enumerate(CORPUS_SPLITS)}
        return _write_corpus(name, target, {s: p.read_bytes() for s, p in texts.items()}, verify)
    else:
        return _write_corpus(name, target, _wikitext2_texts(src, get, verify), verify)
    return _write_images(name, target, arrays)


def _write_images(name: str, target: Path, arrays: convert.ImageArrays) -> Path:
    problem = layout_problem(arrays.as_npz_dict())
    if problem:  # a converter bug or an unexpected release: never write a bad file
        raise UserError(f"Preparing {name} produced an invalid layout: {problem}.")
    path = target / f"{name}.npz"
    log.info("writing %s (%d train, %d test images)", path, len(arrays.y_train), len(arrays.y_test))
    # Uncompressed: images barely compress, and every run pays the load time.
    with atomic_output(path) as f:
        np.savez(f, **arrays.as_npz_dict())
    return path


def _wikitext2_texts(src: Path | None, get: Callable[[], Path], verify: bool) -> dict[str, bytes]:
    """The three token files, from loose files in ``src`` or else the official zip."""
    if src is not None and src.is_dir():
        loose = {}
        for split in CORPUS_SPLITS:
            for candidate in (f"wiki.{split}.tokens", f"{split}.txt"):
                if (src / candidate).is_file():
                    loose[split] = src / candidate
                    break
        if len(loose) == len(CORPUS_SPLITS):
            if verify:
                for split, path in loose.items():
                    verify_file(path, "sha256", WIKITEXT2_TOKENS_SHA256[split],
                                what=f"WikiText-2 {split} tokens")
            return {split: path.read_bytes() for split, path in loose.items()}
    with zipfile.ZipFile(get()) as zf:
        members = {split: [n for n in zf.namelist() if n.endswith(f"wiki.{split}.tokens")]
                   for split in CORPUS_SPLITS}
        if any(len(m) != 1 for m in members.values()):
            raise UserError(f"{zf.filename} does not hold wiki.{{train,valid,test}}.tokens: "
                            f"not the official wikitext-2-v1.zip")
        return {split: zf.read(m[0]) for split, m in members.items()}


def _write_corpus(name: str, target: Path, texts: dict[str, bytes], verify: bool) -> Path:
    if verify:
        for split, data in texts.items():
            lines, expected = data.count(b"\n"), CORPUS_LINES[name][split]
            if lines != expected:
                raise ChecksumError(f"{name} {split} has {lines} lines, the official file "
                                    f"{expected}: not the official release.")
    folder = target / name
    for split, data in texts.items():
        with atomic_output(folder / f"{split}.txt") as f:
            f.write(data)
    log.info("wrote %s/{train,valid,test}.txt", folder)
    return folder
