"""Process settings (``mlrsnet.harness.process_env``): set by the command line before torch
starts, a user's own value kept, handed to Ray workers, and no number a run computes changes
with them (huge pages change where PyTorch's buffers live, never what is computed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlrsnet.harness import process_env

CLI = str(Path(sys.executable).with_name("mlrsnet-bench"))


def test_the_command_line_sets_them_before_torch_is_imported_and_keeps_a_users_value() -> None:
    probe = ("import os, sys\n"
             "from mlrsnet.harness.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in process_env.SETTINGS}
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own choice
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-3:] == ["1", "ACTIVE", "False"]


def test_ray_workers_get_the_settings_and_the_suites_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLRSNET_CHECKPOINTS", "/somewhere")
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("HOME_OF_SOMETHING_ELSE", "x")
    env = process_env.forwarded_env()
    assert env["MLRSNET_CHECKPOINTS"] == "/somewhere"
    assert env["THP_MEM_ALLOC_ENABLE"] == "0" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "HOME_OF_SOMETHING_ELSE" not in env


def _train(results: Path, thp: str, data_dir: Path) -> dict[str, pd.DataFrame]:
    """A mini PTB run (its 45 MB logits are what huge pages serve), cut to one short epoch."""
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": thp, "OMP_NUM_THREADS": "1", "MLRSNET_DATA_DIR": str(data_dir)}
    subprocess.run([CLI, "train", "--task", "lstm2-ptb", "--method", "multistep", "--profile", "mini",
                    "--override", "epochs=1", "--override", "train_tokens=12000", "--results", str(results),
                    "--quiet"], env=env, check=True)
    (experiment,) = [p for p in results.iterdir() if p.is_dir()]
    return {t: pd.read_parquet(experiment / t) for t in ("steps", "epochs")}


def test_a_run_computes_the_same_numbers_with_and_without_huge_pages(tmp_path: Path, data_dir: Path) -> None:
    on, off = _train(tmp_path / "on", "1", data_dir), _train(tmp_path / "off", "0", data_dir)
    assert len(on["steps"]) >= 10
    for table, columns in (("steps", ["step", "lr", "loss"]), ("epochs", ["epoch", "split", "metric", "value"])):
        assert on[table][columns].equals(off[table][columns]), table
