"""``mlrsnet-bench data check``: what data is on disk, where, and whether it is the real thing.

One row per file, so every digest can be compared with a published one (SOURCES.md
lists per-file sha256s for the subsets and the text corpora).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlrsnet.paper.data.fetch import file_digest
from mlrsnet.paper.data.locate import (
    CORPORA,
    CORPUS_SPLITS,
    IMAGE_DATASETS,
    PathLike,
    data_dirs,
    image_file_names,
)
from mlrsnet.paper.data.sources import PUBLISHED_SHA256


def _row(name: str, kind: str, file: str, path: Path | None) -> dict[str, Any]:
    """``verified``: True/False when a published digest exists for this file, else None."""
    present = path is not None
    sha256 = file_digest(path) if present else None
    published = PUBLISHED_SHA256.get(file)
    return {
        "name": name, "kind": kind, "file": file, "present": present,
        "path": str(path) if present else None,
        "bytes": path.stat().st_size if present else None,
        "sha256": sha256,
        "verified": (sha256 == published) if present and published else None,
    }


def _first(file: str, folders: list[Path]) -> Path | None:
    return next((folder / file for folder in folders if (folder / file).is_file()), None)


def check(data_dir: PathLike | None = None) -> list[dict[str, Any]]:
    """Rows ``name, kind (full/mini), file, present, path, bytes, sha256, verified``.

    For each image dataset, every file a lookup could use (full and mini, first folder
    holding it); a single ``present=False`` row for the full file when neither exists.
    For each corpus, one row per split file.  Hashes whole files: seconds for GBs.
    """
    folders = data_dirs(data_dir)
    rows: list[dict[str, Any]] = []
    for name in IMAGE_DATASETS:
        found = [(file, path) for file in image_file_names(name, allow_mini=True)
                 if (path := _first(file, folders)) is not None]
        if not found:
            rows.append(_row(name, "full", f"{name}.npz", None))
        for file, path in found:
            rows.append(_row(name, "mini" if file.endswith("-mini.npz") else "full", file, path))
    for name in CORPORA:
        files = [f"{name}/{split}.txt" for split in CORPUS_SPLITS]
        # The folder the loader would use (all three files together), else what exists.
        complete = next((f for f in folders if all((f / file).is_file() for file in files)), None)
        for file in files:
            path = complete / file if complete is not None else _first(file, folders)
            rows.append(_row(name, "full", file, path))
    return rows
