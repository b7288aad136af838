"""Every committed results store opens in any Parquet reader, as a user would open it.

A store is a folder ``reports/<name>/results`` (the published CPU reproduction, the profile
floors' runs).  Each of its tables, ``<experiment>/<table>/``, is read whole with
``pandas.read_parquet(folder)`` and with ``pyarrow.dataset`` across its files, in the fixed
schema of :mod:`mlrsnet.harness.store`, and ``steps`` and ``epochs`` count epochs alike.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from mlrsnet.harness.store import SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
STORES = sorted(p for p in (ROOT / "reports").glob("*/results") if p.is_dir())
FOLDERS = [t for s in STORES for e in sorted(s.iterdir()) for t in sorted(e.iterdir())
           if t.name in SCHEMAS and any(t.glob("*.parquet"))]


def _id(folder: Path) -> str:
    return folder.relative_to(ROOT).as_posix()


def test_the_published_stores_are_found() -> None:
    assert {s.relative_to(ROOT).as_posix() for s in STORES} >= {"reports/cpu/results",
                                                               "reports/profile_floors/results"}
    assert len(FOLDERS) >= 3 * 13


@pytest.mark.parametrize("folder", FOLDERS, ids=_id)
def test_a_published_table_opens_in_pandas_and_pyarrow_dataset_with_its_fixed_schema(folder: Path) -> None:
    files = sorted(folder.glob("*.parquet"))
    df = pd.read_parquet(folder)
    dataset = ds.dataset(folder, format="parquet")
    table = dataset.to_table()
    assert len(df) == table.num_rows > 0 or folder.name == "steps"
    schema = SCHEMAS[folder.name]
    assert list(df.columns) == schema.names
    for fragment in dataset.get_fragments():
        assert fragment.physical_schema.equals(schema, check_metadata=True), fragment.path
    if folder.name == "runs":  # one row per run, its run id its file's name
        assert sorted(df["run_id"]) == sorted(f.stem for f in files)


@pytest.mark.parametrize("experiment", sorted({f.parent for f in FOLDERS}), ids=_id)
def test_steps_and_epochs_of_a_published_experiment_count_epochs_from_1(experiment: Path) -> None:
    if not (experiment / "steps").is_dir():
        pytest.skip("no steps table")
    steps = pd.read_parquet(experiment / "steps")
    epochs = pd.read_parquet(experiment / "epochs")
    if steps.empty:
        pytest.skip("no step recorded")
    first = steps.groupby("run_id")["epoch"].min()
    assert (first == 1).all(), first[first != 1]
    # every epoch with metrics is an epoch with steps, under the same number
    measured = epochs.groupby("run_id")["epoch"].apply(set)
    stepped = steps.groupby("run_id")["epoch"].apply(set)
    for run_id, eps in measured.items():
        assert eps <= stepped.get(run_id, set()), run_id


def test_the_published_cpu_reproduction_is_complete_on_a_copy_whose_data_sits_elsewhere(
        tmp_path: Path, data_dir: Path) -> None:
    """Issue 26 item 8: rendered on another machine (the store copied, the same data bytes in
    another folder), every run and search trial of the reproduction still stands, as counted
    by ``reproduce`` (nothing is trained)."""
    import shutil

    from mlrsnet.harness.store import Store
    from mlrsnet.paper.reproduce import count_runs, load_plan, select

    results, data = tmp_path / "results", tmp_path / "elsewhere" / "data"
    shutil.copytree(ROOT / "reports" / "cpu" / "results", results)
    shutil.copytree(data_dir, data)
    plan = load_plan(ROOT / "benchmarks" / "reproduce_all.toml")
    total, done = count_runs(plan, select(plan, None), "cpu", Store(results), str(data), None)
    assert total >= 321 and done == total
