"""Nonsense refused before anything runs (issue 26 items 9 and 11): exit code 2 and one
paragraph through the real command line, nothing trained and nothing left under
``--results``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlrsnet.harness.cli import main
from mlrsnet.harness.store import Store

HEAD = 'profile = "smoke"\nseeds = [0]\ntasks = ["resnet18-cifar10"]\n'
TRAIN = ["train", "--task", "resnet18-cifar10", "--profile", "smoke", "--quiet"]


def one_paragraph(err: str) -> str:
    text = err.strip()
    assert "Traceback" not in text, text
    assert text.count("mlrsnet-bench: error:") == 1 and "\n\n" not in text, text
    return text


def nothing_under(results: Path) -> bool:
    return not results.exists() or not any(p.is_file() for p in results.rglob("*"))


def _bench() -> list[str]:
    script = Path(sys.executable).with_name("mlrsnet-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlrsnet.harness.cli"]


def bench(args: list[str], data_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*_bench(), *args], env=env, capture_output=True, text=True, timeout=timeout)


# -- item 11: a mistyped --data-dir ------------------------------------------------------------
def test_a_data_dir_that_does_not_exist_is_an_error_not_the_environments_data(tmp_path: Path,
                                                                                data_dir: Path) -> None:
    results, typo = tmp_path / "results", tmp_path / "dtaa"
    proc = bench([*TRAIN, "--method", "fixed", "--data-dir", str(typo), "--results", str(results)], data_dir)
    assert proc.returncode == 2, proc.stderr
    text = one_paragraph(proc.stderr)
    assert str(typo) in text and "--data-dir" in text and "does not exist" in text
    assert nothing_under(results)


@pytest.mark.parametrize("command", ["run", "tune", "reproduce", "store restamp"])
def test_every_command_taking_a_data_dir_refuses_a_missing_one(command: str, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(HEAD + '[[methods]]\nname = "fixed"\n[tune]\nsearchers = ["random"]\n')
    argv = {"run": ["run", str(spec)], "tune": ["tune", str(spec)], "reproduce": ["reproduce", "--only", "table1"],
            "store restamp": ["store", "restamp"]}[command]
    results = tmp_path / "results"
    assert main([*argv, "--data-dir", str(tmp_path / "nope"), "--results", str(results)]) == 2
    assert "does not exist" in one_paragraph(capsys.readouterr().err)
    assert nothing_under(results)
