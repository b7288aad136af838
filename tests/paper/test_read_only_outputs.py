"""Read-only output folders are refused up front, exit code 2 and one paragraph, by every
command that writes one (issue 26 item 6): ``tune`` and ``reproduce`` (``--results``),
``reproduce`` and ``report`` (``--out``).  Before, ``train`` and ``run`` refused them and these
ended in a traceback (exit 1) once they first wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.read_only import read_only

from mlrsnet.harness.cli import main

SPEC = ('name = "tunetest"\nprofile = "smoke"\nseeds = [0]\ntasks = ["resnet18-cifar10"]\n'
        '[tune]\nsearchers = ["random"]\n[tune.profiles.smoke]\nsamples = 1\n')


def _one_paragraph(err: str) -> str:
    text = err.strip()
    assert "Traceback" not in text, text
    assert text.count("mlrsnet-bench: error:") == 1 and "\n\n" not in text, text
    return text


def test_tune_refuses_a_read_only_results_folder_through_the_cli(tmp_path: Path, data_dir: Path) -> None:
    spec = tmp_path / "tunetest.toml"
    spec.write_text(SPEC)
    bench = Path(sys.executable).with_name("mlrsnet-bench")
    with read_only(tmp_path / "ro") as results:
        proc = subprocess.run([str(bench), "tune", str(spec), "--results", str(results), "--device", "cpu",
                               "--quiet"], env={**os.environ, "MLRSNET_DATA_DIR": str(data_dir)},
                              capture_output=True, text=True, timeout=120)
        assert not any(results.iterdir())
    assert proc.returncode == 2, proc.stderr
    text = _one_paragraph(proc.stderr)
    assert "--results" in text and "not writable" in text


@pytest.mark.parametrize("which", ["results", "out", "out-render-only"])
def test_reproduce_refuses_a_read_only_results_or_report_folder(which: str, tmp_path: Path, capsys) -> None:
    with read_only(tmp_path / "ro") as ro:
        results = ro if which == "results" else tmp_path / "results"
        out = ro if which.startswith("out") else tmp_path / "report"
        extra = ["--render-only"] if which == "out-render-only" else []
        code = main(["reproduce", "--profile", "smoke", "--only", "table1", "--results", str(results),
                     "--out", str(out), "--quiet", *extra])
        assert not any(ro.iterdir())
    assert code == 2
    text = _one_paragraph(capsys.readouterr().err)
    assert ("--results" if which == "results" else "--out") in text and "not writable" in text


def test_report_refuses_a_read_only_out_folder(tmp_path: Path, capsys) -> None:
    with read_only(tmp_path / "ro") as out:
        code = main(["report", "table1", "--experiment", "table1", "--results", str(tmp_path / "results"),
                     "--out", str(out / "sub")])
    assert code == 2
    text = _one_paragraph(capsys.readouterr().err)
    assert "--out" in text and "not writable" in text
