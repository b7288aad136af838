"""Spec helpers for the search tests (the local Ray instance is in tests/paper/conftest.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[[str], Path]:
    """Write a smoke-profile spec with the given body (tasks and [tune] block)."""

    def write(body: str, name: str = "tunetest") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(f'name = "{name}"\nprofile = "smoke"\n' + body)
        return path

    return write


@pytest.fixture
def tune_args() -> Callable[..., argparse.Namespace]:
    """``mlrsnet-bench tune`` arguments exactly as the CLI parses them."""
    from mlrsnet.harness.cli import build_parser

    def parse(spec: Path, results: Path, extra: Sequence[str] = ()) -> argparse.Namespace:
        return build_parser().parse_args(["tune", str(spec), "--results", str(results),
                                          "--device", "cpu", "--quiet", *extra])

    return parse
