"""Two processes on one results folder: each run is claimed by one of them and trained once,
and each process ends once every run it was asked for is done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from mlrsnet.harness.store import Store

SPEC = """
name = "race"
profile = "smoke"
seeds = [0]
tasks = ["resnet18-cifar10"]

[[methods]]
name = "fixed"
hparams = { lr = 0.05 }

[[methods]]
name = "cosine"
hparams = { lr = 0.05 }

[[methods]]
name = "multistep"
hparams = { lr = 0.05 }
"""


def _bench() -> list[str]:
    script = Path(sys.executable).with_name("mlrsnet-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlrsnet.harness.cli"]


def test_two_processes_on_one_results_folder_train_each_run_once(tmp_path: Path, data_dir) -> None:
    spec = tmp_path / "race.toml"
    spec.write_text(SPEC)
    results = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [*_bench(), "run", str(spec), "--results", str(results), "--device", "cpu"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    trained: dict[str, list[int]] = {}
    for p, (_, err) in zip(procs, outputs, strict=True):
        for line in err.splitlines():
            m = re.match(r"\[\d/3\] resnet18-cifar10 smoke (\S+) seed=0: (.*)$", line)
            if m is None:
                continue
            outcome = m[2]
            # a run the other process holds is waited for, then found done (issue 26 item 5)
            assert (outcome.startswith("finished") or outcome == "already done, skipped"
                    or re.match(r"claimed by \S+:\d+, .*waiting for it until it ends", outcome)), line
            if outcome.startswith("finished"):
                trained.setdefault(m[1], []).append(p.pid)
    assert {m: len(pids) for m, pids in trained.items()} == {"fixed": 1, "cosine": 1, "multistep": 1}, outputs
    runs = Store(results).runs("race").set_index("method")
    assert sorted(runs["status"]) == ["finished"] * 3
    for method, pids in trained.items():
        assert runs.loc[method, "pid"] == pids[0]  # the row is the trainer's
    assert not [p for p in results.rglob("*") if p.is_file() and p.suffix in (".lock", ".tmp", ".break")]
    for _, err in outputs:  # each process saw every run done: trained, or found done after a wait
        done = {m[1] for m in re.finditer(r"\] resnet18-cifar10 smoke (\S+) seed=0: (finished|already done)", err)}
        assert done == {"fixed", "cosine", "multistep"}, err
