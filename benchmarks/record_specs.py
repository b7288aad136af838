"""Store the resolved spec of every stage of a reproduction plan beside its results.

``reproduce`` and ``tune`` store each experiment's resolved spec (methods in order, labels,
seeds, the held-out sweep, the ``[report]`` table, the tasks' reference values) in
``<results>/<experiment>/spec.json`` whenever they run it, and the report is drawn from
the store alone.  A results folder made before that (the published ``reports/cpu/results``)
gets them once from this script.  It trains nothing and changes no run: it writes
``spec.json`` files only, the same ones ``reproduce`` writes.

    MLRSNET_DATA_DIR=../shared/data .venv/bin/python benchmarks/record_specs.py \
        --profile cpu --results reports/cpu/results
"""

from __future__ import annotations

import argparse
import os
import sys

from mlrsnet.harness.experiment import load_spec
from mlrsnet.harness.store import Store
from mlrsnet.paper import DEFAULT_PLAN
from mlrsnet.paper.report.references import stored_spec
from mlrsnet.paper.reproduce import load_plan, record_stage


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", default=DEFAULT_PLAN)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--results", required=True)
    p.add_argument("--data-dir", default=None, help="dataset folder (else $MLRSNET_DATA_DIR, then ./data)")
    args = p.parse_args(argv)
    plan = load_plan(args.plan)
    store = Store(args.results)
    data_dir = args.data_dir or os.environ.get("MLRSNET_DATA_DIR")
    for stage in plan.stages:
        profile = plan.profile_of(stage, args.profile)
        if not (store.root / stage.name).is_dir():
            print(f"{stage.name}: no results, nothing stored", file=sys.stderr)
            continue
        if stage.kind == "run":
            record_stage(store, stage, profile, None, data_dir)
        else:
            store.write_spec(stage.name, stored_spec(load_spec(stage.spec_path, profile=profile), data_dir))
        print(f"{stage.name}: {store.root / stage.name / 'spec.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
