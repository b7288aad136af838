"""Executors: the Ray executor writes the same tables as the in-process one."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlrsnet.harness.executor import run_local, run_ray
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import DamagedFileWarning, Store


def _curves(store: Store, exp: str) -> pd.DataFrame:
    df = store.read("epochs", exp)
    return df.sort_values(["run_id", "epoch", "split", "metric"]).reset_index(drop=True)


def test_ray_tasks_produce_the_same_tables_as_local_runs(tmp_path: Path, data_dir) -> None:
    ray = pytest.importorskip("ray")
    cells = [Cell("resnet18-cifar10", "smoke", m, {"lr": 0.05}, experiment="e") for m in ("fixed", "cosine")]
    local, remote = Store(tmp_path / "local"), Store(tmp_path / "ray")
    assert set(run_local(cells, local, quiet=True, device="cpu").values()) == {"finished"}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcomes = run_ray(cells, remote, quiet=True, device="cpu")
        assert set(outcomes.values()) == {"finished"}
        # a second call finds everything done and starts nothing
        assert set(run_ray(cells, remote, quiet=True, device="cpu").values()) == {"skipped"}
    finally:
        ray.shutdown()
    # Ray workers run with one intra-op thread (num_cpus=1), this process with two: float
    # reductions are ordered differently, so equal up to rounding rather than bit for bit.
    pd.testing.assert_frame_equal(_curves(local, "e"), _curves(remote, "e"), check_exact=False, rtol=1e-4)
    assert sorted(remote.runs("e")["status"]) == ["finished", "finished"]


def _cell(**kw) -> Cell:
    return Cell("resnet18-cifar10", "smoke", kw.pop("method", "fixed"), {"lr": 0.05}, experiment="e", **kw)


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
