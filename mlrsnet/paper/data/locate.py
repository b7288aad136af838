"""Finding prepared data on disk, and the error that says how to get it when it is not there.

One lookup order everywhere (``--data-dir``, then ``$MLRSNET_DATA_DIR``, then ``./data``)
so that a user, a test and a Ray worker all resolve a dataset name to the same file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mlrsnet.errors import UserError

DATA_ENV = "MLRSNET_DATA_DIR"

#: Image datasets that ``prepare`` can build, and text corpora it can fetch.
IMAGE_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "svhn", "tinyimagenet")
CORPORA: tuple[str, ...] = ("ptb", "wikitext-2")
CORPUS_SPLITS: tuple[str, ...] = ("train", "valid", "test")

PathLike = str | os.PathLike[str]


class MissingDataError(UserError):
    """A dataset is not on disk; the message names the files, the folders and the fix."""

    @classmethod
    def for_files(cls, name: str, files: Sequence[str], folders: Sequence[Path],
                  data_dir: PathLike | None = None) -> MissingDataError:
        # Built by a factory rather than __init__ so the exception pickles with its
        # message alone (Ray ships errors between processes).
        looked_for = " or ".join(f"'{f}'" for f in files)
        searched = ", ".join(_describe_folder(folder, data_dir) for folder in folders)
        return cls(
            f"Dataset '{name}' is not prepared: looked for {looked_for} in {searched}. "
            f"Fix: run `{prepare_command(name, data_dir)}` (downloads and verifies the "
            f"official release; offline, add --source FOLDER holding the official files).")


def _describe_folder(folder: Path, data_dir: PathLike | None) -> str:
    env = os.environ.get(DATA_ENV)
    if data_dir is not None and folder == _as_dir(data_dir):
        return f"{folder} (--data-dir)"
    if env and folder == _as_dir(env):
        return f"{folder} (${DATA_ENV})"
    return str(folder)


def prepare_command(name: str | Sequence[str], data_dir: PathLike | None = None) -> str:
    """The one command that builds ``name`` (or several datasets) where the lookup will find it."""
    names = [name] if isinstance(name, str) else list(dict.fromkeys(name))
    command = f"mlrsnet-bench data prepare {' '.join(names)}"
    if data_dir is not None and str(data_dir) != "":
        command += f" --data-dir {_as_dir(data_dir)}"
    return command


def _as_dir(path: PathLike) -> Path:
    return Path(path).expanduser().absolute()


def data_dirs(data_dir: PathLike | None = None) -> list[Path]:
    """The folders searched for data, first match wins.

    An explicit ``data_dir`` (``--data-dir``) comes first, then ``$MLRSNET_DATA_DIR``, then
    ``./data`` (relative to the current directory).  Folders need not exist; duplicates
    are dropped.  ``prepare`` writes into the first one.
    """
    candidates: list[Path] = []
    if data_dir is not None and str(data_dir) != "":
        candidates.append(_as_dir(data_dir))
    env = os.environ.get(DATA_ENV)
    if env:
        candidates.append(_as_dir(env))
    candidates.append(_as_dir("data"))
    unique: list[Path] = []
    seen: set[Path] = set()
    for folder in candidates:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(folder)
    return unique


def image_file_names(name: str, *, allow_mini: bool) -> list[str]:
    """The file names that can serve ``name``, preferred first."""
    return [f"{name}.npz", f"{name}-mini.npz"] if allow_mini else [f"{name}.npz"]


def find_image_file(name: str, *, allow_mini: bool, data_dir: PathLike | None = None) -> Path:
    """The prepared ``.npz`` for ``name``.

    Folders are tried in :func:`data_dirs` order; within a folder the full
    ``<name>.npz`` beats ``<name>-mini.npz`` (which serves only when ``allow_mini``).
    Folder order wins over fidelity so that ``--data-dir`` always means "use what is
    there", never "unless ./data happens to hold something bigger".
    """
    names = image_file_names(name, allow_mini=allow_mini)
    folders = data_dirs(data_dir)
    for folder in folders:
        for file_name in names:
            path = folder / file_name
            if path.is_file():
                return path
    raise MissingDataError.for_files(name, names, folders, data_dir)


def find_corpus_dir(name: str, data_dir: PathLike | None = None) -> Path:
    """The folder ``<data dir>/<name>/`` holding ``train.txt``, ``valid.txt``, ``test.txt``."""
    files = [f"{name}/{split}.txt" for split in CORPUS_SPLITS]
    folders = data_dirs(data_dir)
    for folder in folders:
        if all((folder / f).is_file() for f in files):
            return folder / name
    raise MissingDataError.for_files(name, [", ".join(files)], folders, data_dir)
