"""Stopping a command: ``kill -TERM`` (and ``kill -INT`` on a background job, which starts with
SIGINT ignored) ends it like Ctrl-C, so the run it was training resumes instead of being lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlrsnet.harness.store import Store

# A background job of a non-interactive shell inherits SIGINT ignored; reproduce that.
LAUNCH = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
          "from mlrsnet.harness.cli import main; sys.exit(main(sys.argv[1:]))")


def _train(results: Path) -> list[str]:
    return [sys.executable, "-c", LAUNCH, "train", "--task", "resnet18-cifar10", "--method",
            "multistep", "--profile", "smoke", "--results", str(results), "--quiet"]


def _wait_for_running_row(results: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (results / "adhoc" / "runs").exists():
            runs = Store(results).runs("adhoc")
            if len(runs) and (runs["status"] == "running").all():
                return
        time.sleep(0.05)
    raise AssertionError("the run never reached the store as running")


def _stopped_by(sig: signal.Signals, results: Path, data_dir: Path) -> tuple[int, str]:
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(_train(results), env=env, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_running_row(results, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def test_sigterm_stops_a_run_resumably_and_the_same_command_finishes_it(tmp_path: Path,
                                                                         data_dir: Path) -> None:
    results = tmp_path / "results"
    code, err = _stopped_by(signal.SIGTERM, results, data_dir)
    assert code == 130, err
    assert "interrupted; run the same command again to resume" in err and "Traceback" not in err
    row = Store(results).runs("adhoc").iloc[0]
    assert row["status"] == "running" and "interrupted (KeyboardInterrupt)" in row["error"]

    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir)}
    again = subprocess.run(_train(results), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    runs = Store(results).runs("adhoc")
    assert list(runs["status"]) == ["finished"] and list(runs["run_id"]) == [row["run_id"]]


def test_sigint_reaches_a_command_started_with_sigint_ignored(tmp_path: Path, data_dir: Path) -> None:
    code, err = _stopped_by(signal.SIGINT, tmp_path / "results", data_dir)
    assert code == 130, err
    assert "interrupted" in err
