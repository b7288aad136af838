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


# -- one fixed schema, one epoch convention -----------------------------------------------------
def test_runs_whose_optional_columns_are_empty_in_one_file_and_set_in_another_open_in_pandas_and_pyarrow(
        tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow.dataset as ds

    store = Store(tmp_path)
    store.write_run_row(_row("a", "finished"))  # error, pid, wall time ... empty
    store.write_run_row({**_row("b", "failed"), "error": "boom", "pid": 7, "wall_time_s": 1.5,
                         "diverged_step": 3, "epochs_done": 2})
    folder = tmp_path / "exp" / "runs"
    df = pd.read_parquet(folder)
    assert sorted(df["run_id"]) == ["a", "b"] and set(df["error"].dropna()) == {"boom"}
    table = ds.dataset(folder, format="parquet").to_table()
    assert table.num_rows == 2 and table.schema.field("error").type == "string"


def test_every_table_file_carries_its_fixed_schema_whatever_its_values(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from mlrsnet.harness.store import SCHEMAS, schema_version

    store = Store(tmp_path)
    _finished_run(store, "a")
    store.write_curves("exp", "b", [], {"step": [], "epoch": [], "lr": [], "loss": []})  # empty
    for table, schema in SCHEMAS.items():
        for rid in ("a", "b") if table != "runs" else ("a",):
            read = pq.read_schema(store.path("exp", table, rid))
            assert read.equals(schema, check_metadata=True), table
            assert schema_version(read) == 2


def test_steps_and_epochs_count_epochs_alike_so_they_join_on_run_and_epoch(tmp_path: Path, data_dir) -> None:
    from mlrsnet.harness.executor import run_cell
    from mlrsnet.harness.experiment import Cell

    store = Store(tmp_path)
    cell = Cell("resnet18-cifar10", "smoke", "fixed", {"lr": 0.05}, experiment="e")
    run_cell(cell, store, data_dir=data_dir, quiet=True)
    steps, epochs = store.read("steps", "e"), store.read("epochs", "e")
    per_epoch = steps.groupby("epoch")["step"].agg(["min", "max", "count"])
    assert list(per_epoch.index) == sorted(set(epochs["epoch"])) == [1, 2]
    assert per_epoch["min"].iloc[0] == 0 and per_epoch["count"].nunique() == 1  # epoch 1 = steps 0..k-1
    joined = steps.merge(epochs[epochs["metric"] == "loss"], on=["run_id", "epoch"])
    assert len(joined) == len(steps) * epochs[epochs["metric"] == "loss"]["split"].nunique()


def _legacy_store(root: Path) -> None:
    """Files as version 1 wrote them: runs typed by their values, steps.epoch from 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = {"run_id": "a", "experiment": "exp", "task": "t", "profile": "smoke", "method": "fixed",
            "hparams": '{"lr": 0.1}', "seed": 0, "tags": "{}", "overrides": "{}", "status": "superseded",
            "error": None, "diverged_step": None, "started": "2025-01-01", "data": '{"files": {}}'}
    for rid, error in (("a", None), ("b", "superseded by run c")):
        path = root / "exp" / "runs" / f"{rid}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([{**base, "run_id": rid, "error": error}]), path)
        for table, data in (("steps", {"run_id": [rid] * 3, "step": [0, 1, 2], "epoch": [0, 0, 1],
                                       "lr": [0.1] * 3, "loss": [2.3, 2.2, 2.1]}),
                            ("epochs", {"run_id": [rid] * 2, "epoch": [1, 2], "split": ["test"] * 2,
                                        "metric": ["acc"] * 2, "value": [0.1, 0.2]})):
            path = root / "exp" / table / f"{rid}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(data), path)


def test_a_version_1_store_reads_as_version_2_and_migrates_in_place_once(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    import pandas as pd

    _legacy_store(tmp_path)
    with pytest.raises(Exception, match="Unsupported cast from string to null"):
        pd.read_parquet(tmp_path / "exp" / "runs")  # what version 1 did to a pandas user
    store = Store(tmp_path)
    before = store.runs("exp")
    assert list(store.read("steps", "exp").groupby("run_id")["epoch"].min()) == [1, 1]

    assert main(["store", "migrate", "--results", str(tmp_path)]) == 0
    assert "rewrote 6 files" in capsys.readouterr().out
    after = store.runs("exp")
    pd.testing.assert_frame_equal(before, after)  # every run, every value, superseded still marked
    assert set(after["status"]) == {"superseded"}
    steps = pd.read_parquet(tmp_path / "exp" / "steps")
    assert list(steps.sort_values(["run_id", "step"])["epoch"]) == [1, 1, 2, 1, 1, 2]
    assert pd.read_parquet(tmp_path / "exp" / "runs")["error"].isna().sum() == 1

    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    assert main(["store", "migrate", "--results", str(tmp_path)]) == 0
    assert "rewrote 0 files" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")} == mtimes


def test_an_epoch_checkpoint_of_version_1_resumes_with_its_steps_counted_from_1() -> None:
    from mlrsnet.harness.loop import checkpoint_steps

    old = {"steps": {"step": [0, 1, 2], "epoch": [0, 0, 1], "lr": [0.1] * 3, "loss": [1.0] * 3}}
    assert checkpoint_steps(old)["epoch"] == [1, 1, 2]
    new = {**old, "steps": checkpoint_steps(old), "steps_epoch_from": 1}
    assert checkpoint_steps(new)["epoch"] == [1, 1, 2]



def test_a_lock_met_between_its_creation_and_its_record_names_its_owner(tmp_path: Path) -> None:
    """A lock is created empty and its record written a moment later; a second process that
    meets it in between waits for the record instead of saying "claimed by ?:?" (seen once
    in CI, two `run` processes on one folder)."""
    import threading
    import time

    from mlrsnet.harness.files import HOST
    from mlrsnet.harness.store import RunClaimed, RunLock

    path = tmp_path / "locks" / "r.lock"
    path.parent.mkdir()
    path.write_text("")  # created, not written yet
    record = {"host": HOST, "pid": os.getppid(), "heartbeat": time.time()}  # a live process here

    def write_later() -> None:
        time.sleep(0.05)
        path.write_text(json.dumps(record))

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        with pytest.raises(RunClaimed) as exc:
            RunLock(path).acquire("r")
    finally:
        writer.join()
    assert exc.value.owner == record
    assert RunLock(path).describe(exc.value.owner).startswith(f"{HOST}:{os.getppid()}")
