"""Fixtures for the data-layer tests: where the shared real-data subsets live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlrsnet.paper.data import DATA_ENV

# tests/paper/data/conftest.py -> repo root is parents[3]; the shared data sits beside the repo.
_DEFAULT_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder with cifar10-mini.npz, ptb/, wikitext-2/ ... ($MLRSNET_DATA_DIR if set)."""
    folder = Path(os.environ.get(DATA_ENV) or _DEFAULT_SHARED)
    if not (folder / "cifar10-mini.npz").is_file():
        pytest.skip(f"shared real-data subsets not found in {folder}; set {DATA_ENV}")
    return folder


@pytest.fixture
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder with no $MLRSNET_DATA_DIR, so ./data lookups are predictable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_ENV, raising=False)
    return tmp_path
