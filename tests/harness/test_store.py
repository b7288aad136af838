"""The Parquet store: one atomic file per run and table, read back as a union."""

from __future__ import annotations

from pathlib import Path

from mlrsnet.harness.store import Store


def _row(run_id: str, status: str) -> dict:
    return {"run_id": run_id, "experiment": "exp", "task": "t", "profile": "smoke", "method": "fixed",
            "hparams": {"lr": 0.1}, "seed": 0, "status": status}


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
