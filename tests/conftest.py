"""Shared fixtures: real data subsets from ../shared, a quiet single-threaded torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLRSNET_SHARED", REPO.parent / "shared"))
DATA_DIR = Path(os.environ.get("MLRSNET_DATA_DIR", SHARED / "data"))
OFFICIAL_CKPTS = SHARED / "reference" / "official-mlrsnet"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLRSNET_DATA_DIR", str(DATA_DIR))


@pytest.fixture
def data_dir() -> Path:
    if not DATA_DIR.exists():
        pytest.skip(f"real data subsets not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture
def official_ckpts() -> Path:
    if not OFFICIAL_CKPTS.exists():
        pytest.skip(f"official checkpoints not found at {OFFICIAL_CKPTS}")
    return OFFICIAL_CKPTS
