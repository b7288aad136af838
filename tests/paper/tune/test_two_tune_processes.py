"""Two ``tune`` processes on one results folder (issue 26 item 4): the second refuses with
exit code 2 naming the first (host and pid) and touches nothing; the first runs to its end
undisturbed.  Before: the second restored the first's live search, hit the run locks,
rewrote the first's live rows to ``failed``, could delete a live trial's checkpoint, and
exited 1 ("retries used up")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlrsnet.harness.store import Store

SPEC = """name = "tunetest"
profile = "smoke"
tasks = ["resnet18-cifar10"]
[overrides]
epochs = 8
[tune]
searchers = ["random"]
[tune.profiles.smoke]
samples = 2
"""


def test_a_second_tune_on_the_same_results_refuses_and_leaves_the_first_alone(tmp_path: Path,
                                                                               data_dir: Path) -> None:
    spec = tmp_path / "tunetest.toml"
    spec.write_text(SPEC)
    results = tmp_path / "results"
    bench = str(Path(sys.executable).with_name("mlrsnet-bench"))
    cmd = [bench, "tune", str(spec), "--results", str(results), "--device", "cpu", "--quiet",
           "--cpus-per-trial", "2"]
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None:
            runs = Store(results).runs("tunetest") if (results / "tunetest" / "runs").exists() else None
            if runs is not None and (runs["status"] == "running").any():
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first search ended before a trial was seen running"
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert first.poll() is None  # refused while the first is at work
        _, first_err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    err = second.stderr.strip()
    assert "Traceback" not in err and err.count("mlrsnet-bench: error:") == 1
    assert f":{first.pid}" in err and "tunetest" in err
    assert first.returncode == 0, first_err
    runs = Store(results).runs("tunetest")
    assert len(runs) == 2 and set(runs["status"]) == {"finished"}
    assert not runs["error"].fillna("").str.contains("retries").any()  # no row was ever failed
    assert not list((results / "tunetest" / "checkpoints").glob("*.pt"))
