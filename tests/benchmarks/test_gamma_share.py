"""benchmarks/perf/gamma_share.py: gamma's full passes as a share of each run's wall time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mlrsnet.harness.store import Store

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "perf" / "gamma_share.py"


@pytest.fixture(scope="module")
def gamma_share():
    spec = importlib.util.spec_from_file_location("gamma_share", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(run_id: str, method: str, wall: float, info: dict, **extra) -> dict:
    return {"run_id": run_id, "experiment": extra.pop("experiment", "e"), "task": "resnet18-cifar10",
            "method": method, "status": extra.pop("status", "finished"), "wall_time_s": wall,
            "method_info": info, "data": extra.pop("data", {}), **extra}


def test_share_is_pass_seconds_over_run_seconds_counting_each_trained_run_once(tmp_path: Path,
                                                                               gamma_share) -> None:
    store = Store(tmp_path)
    three = {"mlrsnet_train_pass_s": 6.0, "mlrsnet_gamma_reference": [[0, 2.3], [10, 1.1], [20, 0.9]]}
    store.write_run_row(_row("a", "mlrsnet-transfer", 100.0, three))
    store.write_run_row(_row("b", "mlrsnet-transfer", 300.0, {**three, "mlrsnet_train_pass_s": 2.0}))
    store.write_run_row(_row("c", "mlrsnet-transfer", 50.0, three, experiment="f",
                             data={"copied_from": "e"}))  # the same run shown in a second figure
    store.write_run_row(_row("d", "mlrsnet", 80.0, {"mlrsnet_train_pass_s": 4.0}))
    store.write_run_row(_row("x", "mlrsnet", 80.0, {"mlrsnet_train_pass_s": 4.0}, status="running"))
    store.write_run_row(_row("y", "fixed", 80.0, {}))
    rows = {(r["experiment"], r["method"]): r for r in gamma_share.gamma_shares(store)}
    assert set(rows) == {("e", "mlrsnet-transfer"), ("e", "mlrsnet")}
    transfer = rows[("e", "mlrsnet-transfer")]
    assert (transfer["runs"], transfer["passes"]) == (2, 3.0)
    assert transfer["share"] == pytest.approx(((6 + 2) / 2) / ((100 + 300) / 2))
    meta = rows[("e", "mlrsnet")]
    assert (meta["runs"], meta["passes"], meta["share"]) == (1, 1.0, pytest.approx(4 / 80))


def test_an_empty_store_is_one_line_and_exit_code_2(tmp_path: Path, gamma_share, capsys) -> None:
    assert gamma_share.main(["--results", str(tmp_path)]) == 2
    assert "no finished MLR-SNet runs" in capsys.readouterr().err
