"""The command line: user mistakes end in one paragraph and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlrsnet.harness.cli import main
from mlrsnet.harness.store import Store

SPEC = """
name = "clitest"
profile = "smoke"
seeds = [0]
tasks = ["resnet18-cifar10"]

[[methods]]
name = "multistep"
hparams = { lr = 0.05 }

[[methods]]
name = "cosine"
label = "Cosine"
hparams = { lr = 0.05 }
"""


def test_list_tasks_prints_every_setting(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "resnet18-cifar10" in out and "lstm-wikitext2" in out and "11,173,962" in out


def test_missing_data_is_one_paragraph_with_the_fix_and_exit_code_2(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--task", "resnet18-svhn", "--method", "fixed", "--profile", "smoke",
                 "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "svhn.npz" in err and "mlrsnet-bench data prepare svhn" in err


def test_a_typo_in_a_spec_names_the_key_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "typo.toml"
    spec.write_text(SPEC.replace('name = "cosine"', 'name = "cosin"'))
    assert main(["run", str(spec), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "methods[1].name" in err and "'cosin' is not a method" in err and "Traceback" not in err


def test_run_writes_parquet_and_report_renders_a_png_from_it(tmp_path: Path, data_dir) -> None:
    spec = tmp_path / "clitest.toml"
    spec.write_text(SPEC)
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(spec), "--results", str(results), "--quiet"]) == 0
    runs = Store(results).runs("clitest")
    assert sorted(runs["status"]) == ["finished", "finished"]
    stored = Store(results).spec("clitest")  # the resolved spec beside its results, for the report
    assert stored["name"] == "clitest" and stored["tasks"] == ["resnet18-cifar10"]
    assert stored["task_facts"]["resnet18-cifar10"]["chance"] == pytest.approx(0.1)
    assert main(["report", "curves", "--experiment", "clitest", "--results", str(results),
                 "--out", str(reports)]) == 0
    png = reports / "clitest-resnet18-cifar10.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_store_restamp_says_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["store", "restamp", "--results", str(tmp_path), "--dry-run"]) == 0
    assert "would add content digests to 0 runs" in capsys.readouterr().out
