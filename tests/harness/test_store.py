"""The Parquet store: one atomic file per run and table, read back as a union."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlrsnet.harness.cli import main
from mlrsnet.harness.experiment import SpecError, parse_spec
from mlrsnet.harness.files import HOST, host_tag
from mlrsnet.harness.store import DamagedFileWarning, RunClaimed, Store


def _row(run_id: str, status: str) -> dict:
    return {"run_id": run_id, "experiment": "exp", "task": "t", "profile": "smoke", "method": "fixed",
            "hparams": {"lr": 0.1}, "seed": 0, "status": status}


def _finished_run(store: Store, rid: str) -> None:
    store.write_run_row(_row(rid, "finished"))
    store.write_curves("exp", rid, [{"epoch": 1, "split": "test", "metric": "acc", "value": 0.5}],
                       {"step": [0], "epoch": [0], "lr": [0.1], "loss": [2.3]})


def test_a_run_is_done_only_once_its_row_says_finished_or_diverged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.status("exp", "a") is None
    store.write_run_row(_row("a", "running"))
    assert not store.is_done("exp", "a")
    store.write_run_row(_row("a", "finished"))
    assert store.is_done("exp", "a")
    store.write_run_row(_row("b", "diverged"))
    assert store.is_done("exp", "b")
    store.write_run_row(_row("c", "failed"))
    assert not store.is_done("exp", "c")


def test_tables_read_back_as_the_union_of_runs_with_json_columns_decoded(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for rid in ("a", "b"):
        store.write_run_row(_row(rid, "finished"))
        store.write_curves("exp", rid, [{"epoch": 1, "split": "test", "metric": "acc", "value": 0.5}],
                           {"step": [0, 1], "epoch": [0, 0], "lr": [0.1, 0.1], "loss": [2.3, 2.2]})
    runs = store.runs("exp")
    assert sorted(runs["run_id"]) == ["a", "b"]
    assert runs["hparams"].iloc[0] == {"lr": 0.1}
    assert len(store.read("steps", "exp")) == 4
    assert set(store.read("epochs")["run_id"]) == {"a", "b"}


def test_writes_leave_no_temporary_files_behind(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_run_row(_row("a", "finished"))
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".parquet")]
    assert leftovers == []


def test_an_empty_store_reads_as_an_empty_frame_with_the_schema_columns(tmp_path: Path) -> None:
    df = Store(tmp_path).read("epochs")
    assert df.empty and list(df.columns) == ["run_id", "epoch", "split", "metric", "value"]


# -- damaged files -----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_file_is_skipped_with_a_warning_naming_it_and_its_run_is_not_done(
        tmp_path: Path, damage: str) -> None:
    store = Store(tmp_path)
    for rid in ("a", "b"):
        _finished_run(store, rid)
    bad = store.path("exp", "epochs", "a")
    bad.write_bytes(bad.read_bytes()[:40] if damage == "truncated" else b"")
    with pytest.warns(DamagedFileWarning, match=re.escape(str(bad))):
        epochs = store.read("epochs", "exp")
    assert list(epochs["run_id"]) == ["b"]
    with pytest.warns(DamagedFileWarning, match=re.escape(str(bad))):
        assert not store.is_done("exp", "a")
    assert store.is_done("exp", "b")


def test_a_damaged_runs_file_reads_as_no_row_not_as_an_error(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _finished_run(store, "a")
    _finished_run(store, "b")
    store.path("exp", "runs", "a").write_bytes(b"")
    with pytest.warns(DamagedFileWarning, match="runs/a.parquet"):
        assert store.status("exp", "a") is None
    with pytest.warns(DamagedFileWarning, match="runs/a.parquet"):
        assert list(store.runs("exp")["run_id"]) == ["b"]


# -- temporary files, permissions --------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_stale_temporary_files_are_removed_by_the_next_write_and_live_ones_kept(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_run_row(_row("a", "running"))
    folder = store.path("exp", "runs", "a").parent
    dead = _dead_pid()
    host = host_tag()
    legacy = folder / ".a.parquet.k2j4h_x9.tmp"         # written by versions before this one
    orphan = folder / f".a.parquet.{host}-{dead}.0f3a.tmp"  # its writer is dead
    live = folder / f".b.parquet.{host}-{os.getppid()}.77aa.tmp"  # being written right now
    for p in (legacy, orphan, live):
        p.write_bytes(b"PAR1")
    store.write_run_row(_row("a", "finished"))
    assert not legacy.exists() and not orphan.exists()
    assert live.exists()


def test_files_are_created_with_the_process_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = Store(tmp_path)
        _finished_run(store, "a")
    finally:
        os.umask(old)
    for table in ("runs", "epochs", "steps"):
        assert stat.S_IMODE(store.path("exp", table, "a").stat().st_mode) == 0o644


# -- owners, locks -----------------------------------------------------------------------------
def test_a_running_row_tells_a_live_owner_from_a_dead_one(tmp_path: Path) -> None:
    live = {**_row("a", "running"), "host": HOST, "pid": os.getpid(), "heartbeat": "2026-01-01T00:00:00+00:00"}
    assert Store.liveness(live) == "live"
    assert Store.liveness({**live, "pid": _dead_pid()}) == "dead"
    assert Store.liveness({**live, "host": "some-other-host"}) == "unknown"
    assert Store.liveness({**live, "status": "finished"}) == "ended"
    store = Store(tmp_path)
    store.write_run_row(live)
    row = store.runs("exp").iloc[0].to_dict()
    assert (row["host"], row["pid"], row["heartbeat"]) == (HOST, os.getpid(), live["heartbeat"])
    assert Store.liveness(row) == "live"


def test_a_run_lock_is_exclusive_released_and_broken_when_its_owner_is_dead(tmp_path: Path) -> None:
    store = Store(tmp_path)
    lock = store.lock("exp", "a")
    other = {"host": HOST, "pid": os.getppid()}  # a live process that is not this one
    lock.path.parent.mkdir(parents=True)
    lock.path.write_text(json.dumps(other))
    with pytest.raises(RunClaimed, match=f"claimed by {re.escape(HOST)}:{os.getppid()}, skipped"):
        lock.acquire("a")
    assert json.loads(lock.path.read_text()) == other  # respected, untouched
    lock.path.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    with pytest.raises(RunClaimed):  # another host: cannot tell, so respected
        lock.acquire("a")
    lock.path.write_text(json.dumps({"host": HOST, "pid": _dead_pid()}))
    lock.acquire("a")  # dead owner: broken and taken
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock.path.exists()


# -- where results go --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", ".hidden", "", "a\\b"])
def test_an_experiment_name_that_is_not_one_safe_folder_name_is_refused(tmp_path: Path, name: str,
                                                                      capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError):
        Store(tmp_path).path(name, "runs", "a")
    with pytest.raises(SpecError, match="key 'name'"):
        parse_spec({"name": name, "profile": "smoke", "tasks": ["resnet18-cifar10"],
                    "methods": [{"name": "fixed"}]})
    results = tmp_path / "results"
    code = main(["train", "--task", "resnet18-cifar10", "--method", "fixed", "--profile", "smoke",
                 "--experiment", name, "--results", str(results), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--experiment" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_spec_named_dot_dot_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('name = ".."\nprofile = "smoke"\ntasks = ["resnet18-cifar10"]\n[[methods]]\nname = "fixed"\n')
    results = tmp_path / "a" / "results"
    assert main(["run", str(spec), "--results", str(results), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "key 'name'" in err and "'..'" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]
