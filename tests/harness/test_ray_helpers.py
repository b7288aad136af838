"""Processes a killed driver leaves behind are ended by the next command, by recorded pid
and only while that pid is still the recorded process (issue 26 item 10).  Before:
``kill -9`` of a ``tune`` or ``reproduce`` driver left Ray's dashboard and runtime-env
agents (about 190 MB) running after the resume, for good."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlrsnet.harness.files import pid_alive, pid_start

DRIVER = """
import subprocess, sys, time
from pathlib import Path
from mlrsnet.harness.ray_helpers import HelperRecord
helper = subprocess.Popen(["sleep", "300"])  # stands for a Ray agent the driver started
HelperRecord(Path(sys.argv[1])).snapshot()
print(helper.pid, flush=True)
time.sleep(300)
"""


def test_the_helpers_of_a_killed_driver_are_ended_and_nothing_else(tmp_path: Path) -> None:
    from mlrsnet.harness.ray_helpers import end_orphans

    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    helper = int(driver.stdout.readline())
    bystander = subprocess.Popen(["sleep", "300"])  # a process no driver of ours started
    try:
        record = json.loads(next(tmp_path.glob("*.json")).read_text())
        assert [h["pid"] for h in record["helpers"]] == [helper]
        # a record naming the bystander's pid with another start time (a reused pid)
        (tmp_path / f"{next(tmp_path.glob('*.json')).stem.rsplit('-', 1)[0]}-1.json").write_text(json.dumps(
            {**record, "driver": 2 ** 22 + 7, "helpers": [{"pid": bystander.pid, "start": "1", "cmd": "sleep"}]}))
        said: list[str] = []
        assert end_orphans(said.append, folder=tmp_path) == []  # its driver is alive: left alone
        assert pid_alive(helper)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert pid_alive(helper)  # orphaned, still running
        ended = end_orphans(said.append, folder=tmp_path)
        assert [h["pid"] for h in ended] == [helper]
        deadline = time.monotonic() + 10
        while _running(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(helper)
        assert bystander.poll() is None  # a reused pid is never ended
        assert len(said) == 1 and f"{helper} sleep" in said[0] and "killed" in said[0]
        assert not list(tmp_path.glob("*.json"))  # records of gone drivers are removed
    finally:
        bystander.kill()
        driver.kill()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan is reaped by init, not by us)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


SPEC = """name = "tunetest"
profile = "smoke"
tasks = ["resnet18-cifar10"]
[overrides]
epochs = 300
[tune]
searchers = ["random"]
[tune.profiles.smoke]
samples = 1
"""


@pytest.mark.slow
def test_kill_9_of_a_tune_driver_leaves_nothing_after_the_next_tune(tmp_path: Path, data_dir: Path) -> None:
    """Through the command: the driver killed mid-trial; the next ``tune`` (the resume)
    ends what the first left, and the search finishes."""
    from mlrsnet.harness.store import Store

    spec = tmp_path / "tunetest.toml"
    spec.write_text(SPEC)
    results, cache = tmp_path / "results", tmp_path / "cache"
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(cache)}
    cmd = [str(Path(sys.executable).with_name("mlrsnet-bench")), "tune", str(spec), "--results", str(results),
           "--device", "cpu", "--cpus-per-trial", "2"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left: list[dict] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = Store(results).runs("tunetest") if (results / "tunetest" / "runs").exists() else None
            if runs is not None and (runs["status"] == "running").any():
                break
            time.sleep(0.2)
        time.sleep(12)  # a refresh of the record after the agents started
        # a smoke epoch takes a fraction of a second: 300 of them keep the trial going past this
        assert first.poll() is None, "the first tune ended before it could be killed: lengthen its trial"
        record = json.loads(next((cache / "mlrsnet" / "ray-drivers").glob("*.json")).read_text())
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(5)
        left = [h for h in record["helpers"] if _running(h["pid"])]
        assert left, "nothing was left running: the test shows nothing"
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        assert second.returncode == 0, second.stderr
        assert "left running by an earlier command" in second.stderr
        assert not [h for h in left if _running(h["pid"])]
    finally:
        first.kill()
        for helper in left:  # only if the test failed: what it started, by pid
            if _running(helper["pid"]) and pid_start(helper["pid"]) == helper["start"]:
                os.kill(helper["pid"], signal.SIGKILL)
