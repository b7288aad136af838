"""Locks left by another host (issue 26 item 5): a store copied from another machine, or a
node lost in the middle of a multi-node Ray run, leaves a run's lock whose owner cannot be
asked whether it lives.  Such a lock is broken once its heartbeat is older than
:func:`~mlrsnet.harness.store.stale_lock_s`; until then the command waits for it.  A command
never exits 0 while a run it was asked for is left unfinished.  Before: "claimed by
otherhost:..., skipped" and exit 0 with the run stuck at 1 of its epochs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlrsnet.harness.executor import run_cell
from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store

CELL = Cell(task="resnet18-cifar10", profile="smoke", method="multistep", experiment="adhoc")
TRAIN = ["train", "--task", "resnet18-cifar10", "--method", "multistep", "--profile", "smoke"]


def _bench() -> list[str]:
    script = Path(sys.executable).with_name("mlrsnet-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlrsnet.harness.cli"]


def _stuck_at_epoch_one(results: Path, heartbeat_age_s: float) -> Path:
    """A run stopped after its first epoch whose lock is held by ``otherhost`` (its heartbeat
    ``heartbeat_age_s`` old), as a store copied from another machine has it."""
    store = Store(results)

    def stop(epoch: int, metrics: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cell(CELL, store, device="cpu", on_epoch=stop)
    row = store.run_row("adhoc", CELL.run_id)
    store.write_run_row({**row, "host": "otherhost", "pid": 4242})
    lock = store.lock("adhoc", CELL.run_id).path
    beat = time.time() - heartbeat_age_s
    lock.write_text(json.dumps({"host": "otherhost", "pid": 4242, "pid_start": "99", "heartbeat": beat,
                                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(beat))}))
    os.utime(lock, (beat, beat))
    return lock


def _train(results: Path, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_bench(), *TRAIN, "--results", str(results), "--device", "cpu"],
                          env={**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=300)


def test_a_three_day_old_lock_of_another_host_is_broken_and_the_run_finished(tmp_path: Path,
                                                                              data_dir: Path) -> None:
    results = tmp_path / "results"
    lock = _stuck_at_epoch_one(results, heartbeat_age_s=3 * 86400)
    proc = _train(results, data_dir)
    assert proc.returncode == 0, proc.stderr
    row = Store(results).run_row("adhoc", CELL.run_id)
    assert row["status"] == "finished" and int(row["epochs_done"]) == 2
    assert "otherhost:4242" in proc.stderr and "no heartbeat" in proc.stderr  # said, not silent
    assert not lock.exists()


def test_a_lock_of_another_host_is_waited_for_while_its_heartbeat_goes_on(tmp_path: Path,
                                                                          data_dir: Path) -> None:
    """The other host renews its heartbeat (a thread here): the command waits and says so.
    The heartbeat stops (the host is gone): once it is older than the threshold (4 s here,
    ``$MLRSNET_STALE_LOCK_S``) the lock is broken and the run finished."""
    import threading

    results = tmp_path / "results"
    lock = _stuck_at_epoch_one(results, heartbeat_age_s=0)
    alive = threading.Event()
    alive.set()

    def other_host_beats() -> None:
        while alive.is_set():
            data = json.loads(lock.read_text())
            lock.write_text(json.dumps({**data, "heartbeat": time.time()}))
            time.sleep(0.3)

    beating = threading.Thread(target=other_host_beats)
    beating.start()
    env = {**os.environ, "MLRSNET_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "MLRSNET_STALE_LOCK_S": "4"}
    proc = subprocess.Popen([*_bench(), *TRAIN, "--results", str(results), "--device", "cpu"], env=env,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "waiting" in line:
                time.sleep(3)  # still waiting while the heartbeat goes on
                assert proc.poll() is None and Store(results).run_row("adhoc", CELL.run_id)["status"] == "running"
                alive.clear()
        proc.wait(timeout=120)
    finally:
        alive.clear()
        beating.join()
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "claimed by otherhost:4242" in err and "waiting" in err and "no heartbeat" in err
    assert Store(results).run_row("adhoc", CELL.run_id)["status"] == "finished"


def test_a_held_lock_renews_its_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder renews its heartbeat while it holds the lock, so a lock in use is never
    taken for a stale one, however long the run: seen from another host (where liveness is
    unknown), held 2 s with beats every 0.25 s and a 1 s threshold, it is not stale."""
    monkeypatch.setenv("MLRSNET_STALE_LOCK_S", "1")
    store = Store(tmp_path)
    with store.lock("e", "r1").holding("r1") as held:
        time.sleep(2.0)
        seen = json.loads(held.path.read_text())
        assert seen["heartbeat"] > time.time() - 1
        elsewhere = {**seen, "host": "otherhost"}
        assert not store.lock("e", "r1")._is_stale(elsewhere)
    assert not held.path.exists()
    assert store.lock("e", "r1")._is_stale({**seen, "host": "otherhost", "heartbeat": time.time() - 5})
