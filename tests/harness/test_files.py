"""Files are never torn and writers never share a temporary file (store and checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlrsnet.harness import loop
from mlrsnet.harness.files import HOST, atomic_write, clean_stale_tmp, host_tag, temp_path


def test_each_write_gets_its_own_temporary_file_named_after_its_owner(tmp_path: Path) -> None:
    a, b = temp_path(tmp_path / "x.pt"), temp_path(tmp_path / "x.pt")
    assert a != b and a.parent == tmp_path
    assert a.name.startswith(f".x.pt.{host_tag()}-{os.getpid()}.") and a.name.endswith(".tmp")
    assert HOST


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    atomic_write(target, lambda fh: fh.write(b"old"))

    def half_then_fail(fh) -> None:  # noqa: ANN001
        fh.write(b"ne")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = tmp_path / f".x.pt.{host_tag()}-999999999.ab12.tmp"
    mine = temp_path(tmp_path / "x.pt")
    ownerless = tmp_path / ".y.parquet.ab12cd34.tmp"
    for p in (dead, mine, ownerless):
        p.write_bytes(b"")
    removed = clean_stale_tmp(tmp_path)
    assert sorted(removed) == sorted([dead, ownerless]) and mine.exists()


def test_the_loops_checkpoint_write_cleans_up_after_a_failure(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ck" / "run.pt"

    def fail(obj, fh) -> None:  # noqa: ANN001
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop.torch, "save", fail)
    with pytest.raises(OSError):
        loop._save_atomic({"epoch": 0}, path)
    assert list(path.parent.iterdir()) == []
