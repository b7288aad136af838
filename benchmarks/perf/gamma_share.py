"""The share of a run that MLR-SNet's ``gamma`` passes take, read from a results store.

``gamma`` needs the mean training loss over one full eval-mode pass of the training split:
once at the start of a meta-training (``mlrsnet``, its ``L0``) and, for a transferred
MLR-SNet (``mlrsnet-transfer``), at the start and at each switch to the next checkpoint
(the official ``gamma_loss="train-pass"``).  Both methods record the passes' wall time in
``runs.method_info["mlrsnet_train_pass_s"]`` (the transfer also the (step, loss) of each
pass in ``mlrsnet_gamma_reference``), so the share is measured on the runs themselves:
pass seconds over the run's wall time.  Nothing is trained here.

Run:  .venv/bin/python benchmarks/perf/gamma_share.py [--results reports/cpu/results]
          [--experiments fig1_meta_train,fig2_meta_test] [--json PATH]
Prints one line per (experiment, task, method) with the mean over its finished runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

from mlrsnet.harness.store import Store

METHODS = ("mlrsnet", "mlrsnet-transfer")


def gamma_shares(store: Store, experiments: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (experiment, task, method): runs, passes per run, pass seconds, run
    seconds and their ratio (means over the finished runs that recorded the pass time).
    Runs copied from another experiment (``data["copied_from"]``) are counted once, where
    they were trained."""
    runs = store.runs(experiments)
    groups: dict[tuple[str, str, str], list[tuple[int, float, float]]] = defaultdict(list)
    for _, row in runs.iterrows():
        info, data = row["method_info"] or {}, row["data"] or {}
        if row["method"] not in METHODS or row["status"] != "finished" or data.get("copied_from"):
            continue
        seconds, wall = info.get("mlrsnet_train_pass_s"), row["wall_time_s"]
        if seconds is None or not wall:
            continue
        passes = len(info.get("mlrsnet_gamma_reference") or []) or 1  # meta-training: L0 only
        groups[(row["experiment"], row["task"], row["method"])].append((passes, float(seconds), float(wall)))
    out = []
    for (experiment, task, method), items in sorted(groups.items()):
        n = len(items)
        passes, seconds, wall = (sum(v[i] for v in items) / n for i in range(3))
        out.append({"experiment": experiment, "task": task, "method": method, "runs": n,
                    "passes": passes, "pass_s": seconds, "run_s": wall, "share": seconds / wall})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="reports/cpu/results")
    ap.add_argument("--experiments", default=None, help="comma-separated (default: all)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)
    rows = gamma_shares(Store(args.results), args.experiments.split(",") if args.experiments else None)
    if not rows:
        print(f"no finished MLR-SNet runs with recorded gamma passes in {args.results}", file=sys.stderr)
        return 2
    print(f"{'experiment':<18} {'task':<22} {'method':<17} {'runs':>4} {'passes':>6} "
          f"{'pass s':>7} {'run s':>7} {'share':>6}")
    for r in rows:
        print(f"{r['experiment']:<18} {r['task']:<22} {r['method']:<17} {r['runs']:>4} {r['passes']:>6.1f} "
              f"{r['pass_s']:>7.1f} {r['run_s']:>7.1f} {r['share']:>6.1%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
