"""Nonsense refused before anything runs (issue 26 items 9 and 11): exit code 2 and one
paragraph through the real command line, nothing trained and nothing left under
``--results``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli_errors import HEAD, TRAIN, nothing_under, one_paragraph

from mlrsnet.harness.cli import main
from mlrsnet.harness.store import Store


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


# -- item 9: nonsense that got past validation ---------------------------------------------------
def test_an_lr_no_float_can_hold_is_refused_before_training(tmp_path: Path, data_dir: Path) -> None:
    """Before: lr=1e308 trained, failed with 'value cannot be converted to type float without
    overflow' on every retry (exit 1)."""
    results = tmp_path / "results"
    proc = bench([*TRAIN, "--method", "fixed", "--hparam", "lr=1e308", "--results", str(results)], data_dir)
    assert proc.returncode == 2, proc.stderr
    text = one_paragraph(proc.stderr)
    assert "'lr'" in text and "1e+308" in text and "float32" in text
    assert nothing_under(results)


@pytest.mark.parametrize("argv", [["--seed", str(2 ** 64 - 1)], ["--seed", str(2 ** 32)]])
def test_a_seed_beyond_the_generators_range_is_refused(argv: list[str], tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    assert main([*TRAIN, "--method", "fixed", *argv, "--results", str(results)]) == 2
    text = one_paragraph(capsys.readouterr().err)
    assert "--seed" in text and "4294967295" in text
    assert nothing_under(results)


@pytest.mark.parametrize(("seeds", "fragment"), [("0-99999999999", "at most"), ("5-2", "0-4"),
                                                 ("0,4294967296", "4294967295")])
def test_a_seed_range_that_is_nonsense_is_refused_without_building_it(seeds: str, fragment: str,
                                                                     tmp_path: Path, capsys) -> None:
    """Before: --seeds 0-99999999999 built the list and died with a MemoryError traceback."""
    spec = tmp_path / "s.toml"
    spec.write_text(HEAD + '[[methods]]\nname = "fixed"\n')
    results = tmp_path / "results"
    assert main(["run", str(spec), "--seeds", seeds, "--results", str(results)]) == 2
    text = one_paragraph(capsys.readouterr().err)
    assert "--seeds" in text and fragment in text
    assert nothing_under(results)


def test_a_spec_seed_beyond_the_range_is_refused(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(HEAD.replace("seeds = [0]", f"seeds = [{2 ** 40}]") + '[[methods]]\nname = "fixed"\n')
    assert main(["run", str(spec), "--results", str(tmp_path / "results")]) == 2
    assert "'seeds'" in one_paragraph(capsys.readouterr().err)


def test_run_on_a_tuning_only_spec_is_refused(tmp_path: Path, capsys) -> None:
    """Before: 'experiment x: 0 runs', exit 0."""
    spec = tmp_path / "s.toml"
    spec.write_text(HEAD + '[tune]\nsearchers = ["random"]\n')
    assert main(["run", str(spec), "--results", str(tmp_path / "results")]) == 2
    text = one_paragraph(capsys.readouterr().err)
    assert "[[methods]]" in text and "mlrsnet-bench tune" in text
    assert nothing_under(tmp_path / "results")


def test_two_method_entries_differing_only_in_label_are_refused(tmp_path: Path, capsys) -> None:
    """Before: both entries made the same run (the label is not part of its identity); the
    second label vanished from the results."""
    spec = tmp_path / "s.toml"
    spec.write_text(HEAD + '[[methods]]\nname = "fixed"\nlabel = "A"\nhparams = { lr = 0.1 }\n'
                    '[[methods]]\nname = "fixed"\nlabel = "B"\nhparams = { lr = 0.1 }\n')
    assert main(["run", str(spec), "--results", str(tmp_path / "results")]) == 2
    text = one_paragraph(capsys.readouterr().err)
    assert "methods[1]" in text and "'A'" in text and "'B'" in text
    assert nothing_under(tmp_path / "results")


def _cifar10_copy(folder: Path, data_dir: Path, change: str) -> Path:
    import numpy as np

    folder.mkdir()
    src = np.load(data_dir / "cifar10-mini.npz")
    arrays = {k: src[k] for k in src.files}
    if change == "3 classes":
        arrays["classes"] = arrays["classes"][:3]
        arrays["y_train"], arrays["y_test"] = arrays["y_train"] % 3, arrays["y_test"] % 3
    else:  # 1x1 images
        arrays["x_train"], arrays["x_test"] = arrays["x_train"][:, :1, :1], arrays["x_test"][:, :1, :1]
    np.savez(folder / "cifar10-mini.npz", **arrays)
    return folder


@pytest.mark.parametrize(("change", "fragment"), [("3 classes", "3 classes"), ("1x1 images", "1x1")])
def test_a_cifar10_file_that_is_not_cifar10_is_refused(change: str, fragment: str, tmp_path: Path,
                                                       data_dir: Path) -> None:
    """Before: a 'CIFAR-10' file with 3 classes or 1x1 images trained and finished."""
    folder = _cifar10_copy(tmp_path / "data", data_dir, change)
    results = tmp_path / "results"
    proc = bench([*TRAIN, "--method", "fixed", "--data-dir", str(folder), "--results", str(results)], data_dir)
    assert proc.returncode == 2, proc.stderr
    text = one_paragraph(proc.stderr)
    assert fragment in text and "cifar10-mini.npz" in text and "data prepare cifar10" in text
    runs = Store(results).runs()
    assert runs.empty or not (runs["status"] == "finished").any()


FAILING = '''
from mlrsnet.harness.contract import Method


class Failing(Method):
    name = "failing"
    defaults = {}

    def lr(self, step):
        if step.step == 2:
            raise RuntimeError("boom at step 2\\nsecond line")
        return 0.01
'''
LAUNCH = ("import sys, mlrsnet.baselines as b; b.__path__.append(sys.argv.pop(1)); "
          "from mlrsnet.harness.cli import main; sys.exit(main(sys.argv[1:]))")


def test_train_quiet_with_a_failing_run_prints_one_line_naming_the_failure(tmp_path: Path,
                                                                           data_dir: Path) -> None:
    """Before: nothing at all on stderr, exit code 1."""
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "failing_method.py").write_text(FAILING)
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LAUNCH, str(tmp_path / "plug"), *TRAIN, "--method", "failing",
                           "--results", str(tmp_path / "results")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "failing" in lines[0] and "FAILED" in lines[0] and "RuntimeError: boom at step 2" in lines[0]


EXPLODING = '''
from mlrsnet.harness.contract import Method


class Exploding(Method):
    name = "exploding"
    defaults = {}

    def lr(self, step):
        return 0.1 if step.step < 2 else 1e39
'''


def test_an_lr_a_method_returns_beyond_float32_ends_the_run_as_diverged(tmp_path: Path, data_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An LR the parameters' float32 cannot hold is infinite for the step: the run diverged
    (before: 'value cannot be converted to type float without overflow', failed, retried)."""
    import mlrsnet.baselines as baselines

    from mlrsnet.harness.executor import run_cell
    from mlrsnet.harness.experiment import Cell

    (tmp_path / "exploding_big.py").write_text(EXPLODING)
    monkeypatch.setattr(baselines, "__path__", [*baselines.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "mlrsnet.baselines.exploding_big", raising=False)
    store = Store(tmp_path / "results")
    result = run_cell(Cell("resnet18-cifar10", "smoke", "exploding", experiment="e"), store, device="cpu")
    assert result.status == "diverged" and result.diverged_step == 2
