"""``benchmarks/perf/gpu_check.py`` dry-runs on the CPU (``--device cpu --quick``): every
section runs through the same code a GPU run takes and writes its JSON and Markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_check_dry_runs_on_the_cpu(tmp_path: Path, data_dir) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "perf" / "gpu_check.py"), "--device", "cpu",
                           "--quick", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check_cpu_quick.json").read_text())
    sections = report["sections"]
    assert set(sections) == {"equality", "resume", "step_timing", "syncs", "paper_epochs", "mlrsnet_epoch"}
    assert not [n for n, s in sections.items() if "error" in s], {n: s.get("error") for n, s in sections.items()}
    # every method ran on both sides, and on one device the two agree exactly
    from mlrsnet.harness.registry import discover

    assert {r["method"] for r in sections["equality"]["rows"]} == set(discover())
    assert sections["equality"]["ok"] and sections["resume"]["ok"]
    variants = {r["variant"] for r in sections["step_timing"]["rows"]}
    assert variants == {"before: 4 copies a step", "now", "channels-last", "bf16", "all"}
    syncs = {r["pipeline"]: r for r in sections["syncs"]["rows"]}
    assert syncs["before"]["host_to_device_per_step"] >= 4 > syncs["now"]["host_to_device_per_step"]
    assert "## step_timing" in (tmp_path / "gpu_check_cpu_quick.md").read_text()
