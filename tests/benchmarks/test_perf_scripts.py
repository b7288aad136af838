"""Every CPU script of ``benchmarks/perf`` runs, at ``smoke`` and a handful of steps, through
the code a real measurement takes (one shared smoke test, as for the GPU check): a script
that falls behind the contract fails here, not on the day someone wants its numbers.  Nothing
is timed; each run must end with exit code 0 and print its result line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "adaptive_overhead": (["--profile", "smoke", "--steps", "4", "--warmup", "1", "--block", "2",
                           "--methods", "hd", "rtho"], "rtho"),
    "loop_overhead": (["--profile", "smoke", "--blocks", "2", "--block-steps", "2"], "ratio harness/minimal"),
    "mlrsnet_overhead": (["--profile", "smoke", "--steps", "4", "--block", "2", "--repeats", "1"],
                         "meta-training"),
    "cpu_speed": (["--only", "optimizer_import", "--processes", "1"], "first torch.optim.SGD()"),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_perf_script_runs_at_smoke(script: str, data_dir) -> None:
    args, expected = SCRIPTS[script]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "MLRSNET_CHECKPOINTS": str(REPO.parent / "shared" / "reference" / "official-mlrsnet")}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "perf" / f"{script}.py"), *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expected in proc.stdout, proc.stdout[-2000:]
