"""Stopped search trials stand on a copy of the same data (issue 26 item 8).  The committed
store said "265 of about 297 ... not complete" when rendered from a copy with the data
elsewhere: the 32 trials BOHB stopped early were recorded without file digests and
``store restamp`` skipped them.  Now a stopped trial records the files its checkpoint names,
and ``store restamp`` gives the ones recorded before that the files of their search."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mlrsnet.harness.cli import main
from mlrsnet.harness.store import Store
from mlrsnet.paper.tune import tune_command

pytestmark = pytest.mark.usefixtures("ray_local")

SPEC = """name = "searchstage"
profile = "smoke"
seeds = [0]
tasks = ["resnet18-cifar10"]
[overrides]
epochs = 3
[tune]
searchers = ["bohb"]
[tune.profiles.smoke]
samples = 4
"""
PLAN = """[profiles]
smoke = { search = "smoke", figure = "smoke" }
[[stages]]
name = "searchstage"
tune = "benchmarks/searchstage.toml"
"""


def _ended(out: Path, results: Path, data: Path, plan: Path, capsys) -> tuple[int, int]:
    """'Runs and search trials ended: N of about M' of the report rendered from ``results``
    with the data in ``data``."""
    assert main(["reproduce", "--plan", str(plan), "--profile", "smoke", "--render-only", "--quiet",
                 "--results", str(results), "--data-dir", str(data), "--out", str(out)]) == 0
    capsys.readouterr()
    m = re.search(r"Runs and search trials ended: (\d+) of about (\d+)", (out / "index.md").read_text())
    assert m, (out / "index.md").read_text()
    return int(m[1]), int(m[2])


def test_a_copied_store_with_moved_data_is_complete_after_restamp(data_dir: Path, tmp_path: Path,
                                                                  tune_args, capsys) -> None:
    (tmp_path / "benchmarks").mkdir()
    spec = tmp_path / "benchmarks" / "searchstage.toml"
    spec.write_text(SPEC)
    plan = tmp_path / "benchmarks" / "plan.toml"
    plan.write_text(PLAN)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(data_dir / "cifar10-mini.npz", data / "cifar10-mini.npz")
    results = tmp_path / "results"
    # the profile's CPUs per trial: the threads a search trial is expected to have trained with
    assert tune_command(tune_args(spec, results, ["--data-dir", str(data)])) == 0
    runs = Store(results).runs("searchstage")
    stopped = runs[runs["status"] == "stopped"]
    assert len(stopped) >= 1 and len(runs) == 4  # BOHB stopped some early
    assert all(d.get("files") for d in stopped["data"])  # they record their files now
    assert _ended(tmp_path / "out0", results, data, plan, capsys) == (4, 4)

    # a store recorded before that: its stopped trials name their folders only
    legacy = tmp_path / "legacy"
    shutil.copytree(results, legacy)
    store = Store(legacy)
    for run_id in stopped["run_id"]:
        row = store.run_row("searchstage", run_id)
        store.write_run_row({**row, "data": {k: v for k, v in row["data"].items() if k not in ("files", "source")}})
    assert _ended(tmp_path / "out1", legacy, data, plan, capsys) == (4, 4)  # in place they stand

    # copied with the data moved elsewhere (the same bytes)
    moved, copied = tmp_path / "moved-data", tmp_path / "copied"
    shutil.copytree(data, moved)
    shutil.copytree(legacy, copied)
    shutil.rmtree(data)
    before = _ended(tmp_path / "out2", copied, moved, plan, capsys)
    assert before == (4 - len(stopped), 4)
    assert main(["store", "restamp", "--results", str(copied), "--data-dir", str(moved)]) == 0
    assert f"added content digests to {len(stopped)} runs" in capsys.readouterr().out
    assert _ended(tmp_path / "out3", copied, moved, plan, capsys) == (4, 4)
    ids = sorted(Store(copied).runs("searchstage")["run_id"])
    assert ids == sorted(runs["run_id"])  # run ids unchanged
