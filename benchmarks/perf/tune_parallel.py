"""Search throughput: trials per hour with 1 vs 2 concurrent trials (parallel efficiency).

Runs the same random search twice through ``mlrsnet-bench tune`` on a fresh local Ray
instance: once with every trial taking all CPUs (one trial at a time), once with one CPU
per trial (as many concurrent trials as cores).  Wall time is measured around the whole
command, so Ray start-up, worker start-up and data loading count, as they do for a user.

Run:  .venv/bin/python benchmarks/perf/tune_parallel.py [--task resnet18-cifar10]
          [--profile smoke] [--epochs N] [--trials 4] [--json out.json]
Needs MLRSNET_DATA_DIR (e.g. ../shared/data).  Prints a table; nothing is asserted.
``--epochs`` overrides the profile's epochs (e.g. one ``mini`` epoch per trial keeps the
mini model's real compute while bounding the benchmark's time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def spec_text(task: str, profile: str, trials: int, epochs: int | None) -> str:
    lines = ['name = "tuneperf"', f'profile = "{profile}"', f'tasks = ["{task}"]']
    if epochs is not None:
        lines += ["[overrides]", f"epochs = {epochs}"]
    lines += ["[tune]", 'searchers = ["random"]', f"[tune.profiles.{profile}]", f"samples = {trials}"]
    return "\n".join(lines) + "\n"


def timed_search(spec: Path, results: Path, cpus_per_trial: float) -> dict:
    cmd = [sys.executable, "-m", "mlrsnet.harness.cli", "tune", str(spec), "--results", str(results),
           "--device", "cpu", "--quiet", "--cpus-per-trial", str(cpus_per_trial)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    runs = pd.concat([pd.read_parquet(p) for p in (results / "tuneperf" / "runs").glob("*.parquet")])
    return {"cpus_per_trial": cpus_per_trial, "trials": len(runs), "wall_s": wall,
            "trials_per_hour": len(runs) / wall * 3600,
            "mean_trial_s": float(runs["wall_time_s"].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="resnet18-cifar10")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "tuneperf.toml"
        spec.write_text(spec_text(args.task, args.profile, args.trials, args.epochs))
        for cpus in (float(cores), 1.0):
            rows.append(timed_search(spec, Path(tmp) / f"results-{cpus:g}", cpus))
    one, many = rows
    speedup = many["trials_per_hour"] / one["trials_per_hour"]
    summary = {"task": args.task, "profile": args.profile, "epochs": args.epochs, "cores": cores,
               "runs": rows, "speedup": speedup, "parallel_efficiency": speedup / cores}
    print(f"{args.task} ({args.profile}{'' if args.epochs is None else f', {args.epochs} epoch(s)'}), "
          f"{args.trials} random-search trials, {cores} cores")
    print(f"{'concurrent':>10} {'wall s':>8} {'trials/h':>9} {'s/trial (in worker)':>20}")
    for r, n in ((one, 1), (many, int(cores))):
        print(f"{n:>10} {r['wall_s']:>8.1f} {r['trials_per_hour']:>9.1f} {r['mean_trial_s']:>20.1f}")
    print(f"speed-up {speedup:.2f}x, parallel efficiency {summary['parallel_efficiency'] * 100:.0f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
