"""Executors: the Ray executor writes the same tables as the in-process one."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import DATA_DIR

import mlrsnet.harness.executor as executor_module
import mlrsnet.harness.store as store_module
from mlrsnet.harness.executor import DataChangedWarning, data_mismatch, run_cell, run_local, run_ray
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.files import HOST
from mlrsnet.harness.restamp import restamp
from mlrsnet.harness.store import DamagedFileWarning, Store

executor_module_train = executor_module.train


def _curves(store: Store, exp: str) -> pd.DataFrame:
    df = store.read("epochs", exp)
    return df.sort_values(["run_id", "epoch", "split", "metric"]).reset_index(drop=True)


def _steps(store: Store, exp: str) -> pd.DataFrame:
    df = store.read("steps", exp)
    return df.sort_values(["run_id", "step"]).reset_index(drop=True)


def test_ray_tasks_produce_the_same_tables_as_local_runs(tmp_path: Path, data_dir) -> None:
    """Bit for bit: both executors train a run with the same intra-op thread count (one per
    run by default), whatever this process's torch threads are."""
    import torch

    ray = pytest.importorskip("ray")
    cells = [Cell("resnet18-cifar10", "smoke", m, {"lr": 0.05}, experiment="e") for m in ("fixed", "cosine")]
    local, remote = Store(tmp_path / "local"), Store(tmp_path / "ray")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as `make test` runs on two cores; Ray workers start with one
    try:
        assert set(run_local(cells, local, quiet=True, device="cpu").values()) == {"finished"}
        assert torch.get_num_threads() == 2  # the run's count is set for the run only
    finally:
        torch.set_num_threads(threads)
    started = not ray.is_initialized()  # the tune tests' session instance may be up
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcomes = run_ray(cells, remote, quiet=True, device="cpu")
        assert set(outcomes.values()) == {"finished"}
        # a second call finds everything done and starts nothing
        assert set(run_ray(cells, remote, quiet=True, device="cpu").values()) == {"skipped"}
        # a run that no longer stands is trained again, and the command's output says why
        row = remote.run_row("e", cells[0].run_id)
        stale = {**row["data"], "profile": {**row["data"]["profile"], "epochs": 99}}
        remote.write_run_row({**row, "data": stale})
        with pytest.warns(DataChangedWarning, match="profile has been redefined"):
            again = run_ray(cells, remote, quiet=True, device="cpu")
        assert again == {cells[0].run_id: "finished", cells[1].run_id: "skipped"}
    finally:
        if started:
            ray.shutdown()
    pd.testing.assert_frame_equal(_curves(local, "e"), _curves(remote, "e"), check_exact=True)
    pd.testing.assert_frame_equal(_steps(local, "e"), _steps(remote, "e"), check_exact=True)
    assert sorted(remote.runs("e")["status"]) == ["finished", "finished"]
    threads_used = {r["threads"] for r in local.runs("e")["method_info"]} | \
        {r["threads"] for r in remote.runs("e")["method_info"]}
    assert threads_used == {1}


# -- damaged files, write failures, stale rows, resume, --force, data identity -----------------
def _cell(**kw) -> Cell:
    return Cell("resnet18-cifar10", "smoke", kw.pop("method", "fixed"), {"lr": 0.05}, experiment="e", **kw)


def _no_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


@pytest.mark.parametrize(("table", "damage"), [("epochs", "truncated"), ("steps", "empty"),
                                               ("runs", "empty"), ("runs", "truncated")])
def test_a_finished_run_with_a_damaged_file_is_trained_again_and_all_its_tables_rewritten(
        tmp_path: Path, data_dir, table: str, damage: str) -> None:
    store, cell = Store(tmp_path), _cell()
    assert run_local([cell], store, quiet=True) == {cell.run_id: "finished"}
    before = _curves(store, "e")
    bad = store.path("e", table, cell.run_id)
    bad.write_bytes(bad.read_bytes()[:64] if damage == "truncated" else b"")
    with pytest.warns(DamagedFileWarning, match=re.escape(str(bad))):
        assert run_local([cell], store, quiet=True) == {cell.run_id: "finished"}
    for t in ("runs", "epochs", "steps"):
        pq.read_table(store.path("e", t, cell.run_id))  # all readable again
    assert store.is_done("e", cell.run_id)
    pd.testing.assert_frame_equal(_curves(store, "e"), before)
    assert run_local([cell], store, quiet=True) == {cell.run_id: "skipped"}


def test_a_failure_writing_the_final_rows_is_recorded_and_leaves_no_temporaries(
        tmp_path: Path, data_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    store, cell = Store(tmp_path), _cell()
    real = store_module.pq.write_table

    def disk_full(table, where, **kw):
        if "split" in table.schema.names:  # the epochs table, after training
            where.write(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(store_module.pq, "write_table", disk_full)
    assert run_local([cell], store, quiet=True) == {cell.run_id: "failed"}
    row = store.run_row("e", cell.run_id)
    assert row["status"] == "failed"
    assert "could not write the results" in row["error"] and "No space left on device" in row["error"]
    assert row["finished"] and row["pid"] == os.getpid() and row["host"] == HOST
    assert _no_temporaries(tmp_path) == []
    assert not store.lock("e", cell.run_id).path.exists()
    monkeypatch.setattr(store_module.pq, "write_table", real)
    assert run_local([cell], store, quiet=True) == {cell.run_id: "finished"}  # resumes
    assert store.run_row("e", cell.run_id)["status"] == "finished"


@pytest.mark.filterwarnings("ignore:.*could not write its heartbeat")
def test_when_not_even_the_failure_can_be_written_the_row_names_its_owner(
        tmp_path: Path, data_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    store, cell = Store(tmp_path), _cell()
    real, trained = store_module.pq.write_table, []

    def read_only(table, where, **kw):
        if trained:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(table, where, **kw)

    monkeypatch.setattr(executor_module, "train",
                        lambda *a, **kw: trained.append(1) or executor_module_train(*a, **kw))
    monkeypatch.setattr(store_module.pq, "write_table", read_only)
    with pytest.warns(UserWarning, match="could not record its failure"):
        assert run_local([cell], store, quiet=True) == {cell.run_id: "failed"}
    row = store.run_row("e", cell.run_id)
    assert row["status"] == "running" and row["heartbeat"]
    assert (row["host"], row["pid"]) == (HOST, os.getpid())
    assert _no_temporaries(tmp_path) == []


def test_the_running_row_has_owner_and_a_heartbeat_each_epoch(tmp_path: Path, data_dir) -> None:
    store, cell = Store(tmp_path), _cell()
    seen = []

    def on_epoch(epoch, metrics):
        seen.append(store.run_row("e", cell.run_id))

    run_cell(cell, store, on_epoch=on_epoch)
    assert [r["epochs_done"] for r in seen] == [1, 2]
    for r in seen:
        assert r["status"] == "running" and r["heartbeat"] and r["wall_time_s"] > 0
        assert Store.liveness(r) == "live"


KILLED = """
import os, signal, sys
from mlrsnet.harness.executor import run_cell
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store

cell = Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.05}, experiment="e")
def die(epoch, metrics):
    os.kill(os.getpid(), signal.SIGKILL)
run_cell(cell, Store(sys.argv[1]), device="cpu", force=sys.argv[2] == "force", on_epoch=die)
"""


def _run_and_kill(root: Path, force: bool = False) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED, str(root), "force" if force else "-"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_killed_run_leaves_a_dead_row_and_its_resume_keeps_started_and_adds_wall_time(
        tmp_path: Path, data_dir) -> None:
    store, cell = Store(tmp_path), _cell()
    _run_and_kill(tmp_path)
    stale = store.run_row("e", cell.run_id)
    assert stale["status"] == "running" and stale["epochs_done"] == 1
    assert Store.liveness(stale) == "dead"
    assert store.lock("e", cell.run_id).path.exists()  # left behind by the killed process
    result = run_cell(cell, store, device="cpu")       # breaks the dead lock, resumes
    done = store.run_row("e", cell.run_id)
    assert done["status"] == "finished"
    assert done["started"] == stale["started"]
    assert done["wall_time_s"] == pytest.approx(stale["wall_time_s"] + result.wall_time_s)
    assert not store.lock("e", cell.run_id).path.exists()


def test_a_forced_rerun_killed_midway_keeps_the_old_result(tmp_path: Path, data_dir) -> None:
    store, cell = Store(tmp_path), _cell()
    run_cell(cell, store, device="cpu")
    old_row, old_curves = store.run_row("e", cell.run_id), _curves(store, "e")
    _run_and_kill(tmp_path, force=True)
    assert store.run_row("e", cell.run_id) == old_row
    pd.testing.assert_frame_equal(_curves(store, "e"), old_curves)
    assert run_cell(cell, store, device="cpu") is None  # still done


def _data_copy(root: Path, shift: int = 0) -> Path:
    root.mkdir()
    src = np.load(DATA_DIR / "cifar10-mini.npz")
    arrays = {k: src[k] for k in src.files}
    arrays["y_train"] = np.roll(arrays["y_train"], shift)
    np.savez(root / "cifar10-mini.npz", **arrays)
    return root


def test_a_finished_run_on_other_data_is_not_done(tmp_path: Path, data_dir) -> None:
    a, b = _data_copy(tmp_path / "a"), _data_copy(tmp_path / "b", shift=7)
    store, cell = Store(tmp_path / "results"), _cell()
    assert run_local([cell], store, data_dir=str(a), quiet=True) == {cell.run_id: "finished"}
    data = store.run_row("e", cell.run_id)["data"]
    assert data["dirs"][0] == str(a.resolve())
    assert list(data["files"]) == [str((a / "cifar10-mini.npz").resolve())]
    size, _, digest = data["files"][str((a / "cifar10-mini.npz").resolve())]
    assert size == (a / "cifar10-mini.npz").stat().st_size
    assert digest == hashlib.sha256((a / "cifar10-mini.npz").read_bytes()).hexdigest()
    assert run_local([cell], store, data_dir=str(a), quiet=True) == {cell.run_id: "skipped"}
    with pytest.warns(DataChangedWarning, match="sha256 differs"):
        assert run_local([cell], store, data_dir=str(b), quiet=True) == {cell.run_id: "finished"}
    assert store.run_row("e", cell.run_id)["data"]["dirs"][0] == str(b.resolve())
    src = np.load(b / "cifar10-mini.npz")  # the same folder, its file rewritten with other labels
    arrays = {k: src[k] for k in src.files}
    arrays["y_train"] = np.roll(arrays["y_train"], 1)
    np.savez(b / "cifar10-mini.npz", **arrays)
    with pytest.warns(DataChangedWarning, match="sha256 differs"):
        assert run_local([cell], store, data_dir=str(b), quiet=True) == {cell.run_id: "finished"}
    assert run_cell(cell, store, data_dir=str(b)) is None


def test_the_same_bytes_under_a_new_mtime_or_folder_keep_a_run_done(tmp_path: Path, data_dir) -> None:
    # a fresh copy of ../shared (new modification times) or another machine's folder
    a = _data_copy(tmp_path / "a")
    store, cell = Store(tmp_path / "results"), _cell()
    assert run_local([cell], store, data_dir=str(a), quiet=True) == {cell.run_id: "finished"}
    st = (a / "cifar10-mini.npz").stat()
    os.utime(a / "cifar10-mini.npz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run_cell(cell, store, data_dir=str(a)) is None
    c = tmp_path / "c"
    c.mkdir()
    shutil.copy(a / "cifar10-mini.npz", c / "cifar10-mini.npz")
    assert run_cell(cell, store, data_dir=str(c)) is None
    (c / "cifar10-mini.npz").unlink()
    assert "not found" in data_mismatch(store.run_row("e", cell.run_id)["data"], [str(c.resolve())])


def test_a_legacy_stamp_needs_the_same_folder_and_mtime_until_restamped(tmp_path: Path, data_dir) -> None:
    a = _data_copy(tmp_path / "a")
    store, cell = Store(tmp_path / "results"), _cell()
    run_local([cell], store, data_dir=str(a), quiet=True)
    row = store.run_row("e", cell.run_id)
    legacy = {p: stamp[:2] for p, stamp in row["data"]["files"].items()}  # as rows were recorded before
    store.write_run_row({**row, "data": {**row["data"], "files": legacy}})
    assert run_cell(cell, store, data_dir=str(a)) is None
    st = (a / "cifar10-mini.npz").stat()
    os.utime(a / "cifar10-mini.npz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not _done_now(cell, store, a)
    report = restamp(store, str(a))
    assert (report.restamped, report.left) == (1, [])
    assert run_cell(cell, store, data_dir=str(a)) is None
    assert restamp(store, str(a)).current == 1  # once only


def _lm_in_two_folders(tmp_path: Path) -> tuple[Path, Path, Store, Cell]:
    """Two data folders holding the same PTB bytes, a store, and a smoke LM cell."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        shutil.copytree(DATA_DIR / "ptb", folder / "ptb")
    return a, b, Store(tmp_path / "results"), Cell("lstm2-ptb", "smoke", "fixed", {"lr": 1.0}, experiment="e")


def test_a_language_model_run_stands_on_the_same_corpus_bytes_in_another_folder(tmp_path: Path, data_dir) -> None:
    a, b, store, cell = _lm_in_two_folders(tmp_path)
    assert run_local([cell], store, data_dir=str(a), quiet=True) == {cell.run_id: "finished"}
    data = store.run_row("e", cell.run_id)["data"]
    assert data["source"] == str((a / "ptb").resolve())
    train = str((a / "ptb" / "train.txt").resolve())
    assert sorted(Path(f).name for f in data["files"]) == ["test.txt", "train.txt", "valid.txt"]
    assert data["files"][train][2] == hashlib.sha256((a / "ptb" / "train.txt").read_bytes()).hexdigest()
    assert run_cell(cell, store, data_dir=str(b)) is None  # the same bytes elsewhere
    with open(b / "ptb" / "valid.txt", "a") as f:
        f.write("one more line\n")
    assert "valid.txt" in data_mismatch(data, [str(b.resolve())])


def test_a_language_model_row_from_before_corpus_stamps_stands_once_restamped(tmp_path: Path, data_dir) -> None:
    a, b, store, cell = _lm_in_two_folders(tmp_path)
    run_local([cell], store, data_dir=str(a), quiet=True)
    row = store.run_row("e", cell.run_id)
    legacy = {**row["data"], "source": "ptb corpus", "files": {}}  # as text rows were recorded before
    store.write_run_row({**row, "data": legacy})
    assert not _done_now(cell, store, b)  # another folder, nothing to compare the bytes with
    report = restamp(store, str(b))
    assert (report.restamped, report.left) == (1, [])
    assert store.run_row("e", cell.run_id)["data"]["source"] == str((b / "ptb").resolve())
    assert _done_now(cell, store, b) and _done_now(cell, store, a)
    assert restamp(store, str(b)).current == 1  # once only


def _done_now(cell, store: Store, data: Path) -> bool:
    from mlrsnet.harness.executor import _done, data_search_dirs

    return _done(cell, store, data_search_dirs(str(data)), warn=False)


def test_a_row_without_a_data_identity_is_trusted(tmp_path: Path) -> None:
    store, cell = Store(tmp_path), _cell()
    store.write_run_row({"run_id": cell.run_id, "experiment": "e", "status": "finished"})
    assert run_cell(cell, store) is None


def test_a_finished_run_of_a_since_redefined_profile_is_trained_again(tmp_path: Path, data_dir, monkeypatch) -> None:
    # results made before a profile's definition changed (epochs, sizes, model) are stale
    from dataclasses import replace

    from mlrsnet.paper.tasks import get_task

    store, cell = Store(tmp_path), _cell()
    run_cell(cell, store, device="cpu")
    assert store.run_row("e", cell.run_id)["data"]["profile"]["epochs"] == get_task(cell.task).profile(cell.profile).epochs
    assert run_cell(cell, store, device="cpu") is None  # unchanged: done
    task = get_task(cell.task)
    longer = replace(task.profiles[cell.profile], epochs=task.profiles[cell.profile].epochs + 1)
    monkeypatch.setitem(task.profiles, cell.profile, longer)
    with pytest.warns(DataChangedWarning, match=r"profile has been redefined.*epochs"):
        result = run_cell(cell, store, device="cpu")
    assert result is not None and max(r["epoch"] for r in result.epochs) == longer.epochs


def test_a_profile_field_added_since_with_its_default_leaves_finished_runs_done(tmp_path: Path, data_dir) -> None:
    # runs recorded before Profile.vocab_size existed lack the key; None is what it reads as
    store, cell = Store(tmp_path), _cell()
    run_cell(cell, store, device="cpu")
    row = store.run_row("e", cell.run_id)
    older = {k: v for k, v in row["data"]["profile"].items() if k != "vocab_size"}
    assert len(older) == len(row["data"]["profile"]) - 1
    store.write_run_row({**row, "data": {**row["data"], "profile": older}})
    assert run_cell(cell, store, device="cpu") is None
    store.write_run_row({**row, "data": {**row["data"], "profile": {**older, "vocab_size": 5}}})
    assert not _done_now(cell, store, DATA_DIR)


def test_runs_record_the_cpu_and_its_kernel_instruction_set() -> None:
    # the same seed gives other floats on another vector ISA: provenance for diverging re-runs
    import torch

    versions = executor_module.package_versions()
    assert versions["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(versions["cpu_model"], str) and versions["cpu_model"].strip()
