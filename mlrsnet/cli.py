"""``mlrsnet-bench``: list, run, tune, report and prepare data.

User mistakes (a typo in a spec, a missing dataset) end with one readable paragraph and
exit code 2, never a traceback; Ctrl-C ends with exit code 130 and a note that re-running
the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_hparams(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--hparam expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        if "-" in text and "," not in text:
            lo, hi = text.split("-")
            return list(range(int(lo), int(hi) + 1))
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds expects e.g. 0,1,2 or 0-4, got {text!r}") from None


# ---------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "tasks":
        from mlrsnet.report.tasks_table import tasks_table

        print(tasks_table())
    else:
        from mlrsnet.methods import discover

        registry = discover()
        width = max(len(n) for n in registry)
        for name in sorted(registry):
            cls = registry[name]
            defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
            print(f"{name:<{width}}  {cls.description or ''}".rstrip())
            if defaults:
                print(f"{'':<{width}}  defaults: {defaults}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mlrsnet.executor import run_local, run_ray
    from mlrsnet.experiment import load_spec
    from mlrsnet.store import Store

    spec = load_spec(args.spec, profile=args.profile, seeds=_parse_seeds(args.seeds))
    cells = spec.cells()
    store = Store(args.results)
    quiet = args.quiet
    if not quiet:
        print(f"experiment {spec.name}: {len(cells)} runs ({spec.profile} profile) -> "
              f"{store.root / spec.name}", file=sys.stderr)
    if args.executor == "ray":
        outcomes = run_ray(cells, store, address=args.address, data_dir=args.data_dir,
                           device=args.device, quiet=quiet, force=args.force)
    else:
        if args.address:
            raise UserError("--address needs --executor ray")
        outcomes = run_local(cells, store, data_dir=args.data_dir, device=args.device,
                             quiet=quiet, force=args.force)
    failed = [r for r, o in outcomes.items() if o == "failed"]
    if not quiet:
        counts = {o: list(outcomes.values()).count(o) for o in sorted(set(outcomes.values()))}
        print("done: " + ", ".join(f"{n} {o}" for o, n in counts.items()), file=sys.stderr)
    return 1 if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    from mlrsnet.executor import run_local
    from mlrsnet.experiment import OVERRIDABLE, Cell, resolved_profile
    from mlrsnet.methods import get_method
    from mlrsnet.store import Store
    from mlrsnet.tasks import get_task

    get_task(args.task).profile(args.profile)
    get_method(args.method)(**_parse_hparams(args.hparam))  # validates the names
    overrides = _parse_hparams(args.override)
    bad = sorted(set(overrides) - set(OVERRIDABLE))
    if bad:
        raise UserError(f"--override {bad[0]!r} is not a profile field; allowed: {', '.join(OVERRIDABLE)}")
    cell = Cell(task=args.task, profile=args.profile, method=args.method,
                hparams=_parse_hparams(args.hparam), seed=args.seed, experiment=args.experiment,
                overrides=overrides)
    resolved_profile(cell)
    if not args.quiet:
        print(f"run {cell.run_id}: artifacts in {Path(args.results) / cell.experiment / 'artifacts' / cell.run_id}",
              file=sys.stderr)
    outcomes = run_local([cell], Store(args.results), data_dir=args.data_dir, device=args.device,
                         quiet=args.quiet, force=args.force)
    return 1 if "failed" in outcomes.values() else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from mlrsnet.tune import tune_command

    return tune_command(args)


def cmd_report(args: argparse.Namespace) -> int:
    from mlrsnet.report import render

    for path in render(args.what, results=Path(args.results), out=Path(args.out),
                       experiment=args.experiment):
        print(path)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from mlrsnet import data

    if args.action == "prepare":
        path = data.prepare(args.name, data_dir=args.data_dir,
                            source=Path(args.source) if args.source else None,
                            verify=not args.no_verify)
        print(f"prepared {args.name}: {path}")
        return 0
    rows = data.check(data_dir=args.data_dir)
    for r in rows:
        if r.get("present"):
            verified = {True: "verified", False: "CHECKSUM MISMATCH", None: ""}[r.get("verified")]
            print(f"{r['name']:<14} {r.get('kind', ''):<5} {r.get('bytes', 0):>12,d} B  "
                  f"sha256 {str(r.get('sha256', ''))[:16]}  {verified:<8} {r.get('path')}")
        else:
            print(f"{r['name']:<14} missing (prepare with: mlrsnet-bench data prepare {r['name']})")
    return 0


# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlrsnet-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=None, help="dataset folder (else $MLRSNET_DATA_DIR, then ./data)")
        p.add_argument("--results", default=os.environ.get("MLRSNET_RESULTS", "results"),
                       help="results folder (Parquet tables); default ./results")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
        p.add_argument("--quiet", action="store_true", help="no progress bars or per-run lines")
        p.add_argument("--force", action="store_true", help="re-run finished runs")
        p.add_argument("--checkpoints", default=None, metavar="DIR",
                       help="folder of the official MLR-SNet checkpoints (mlr_snet_{1,100,200}.pth) "
                            "for mlrsnet-transfer; sets $MLRSNET_CHECKPOINTS")

    p = sub.add_parser("list", help="list tasks or methods")
    p.add_argument("what", choices=["tasks", "methods"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run an experiment spec (benchmarks/*.toml)")
    p.add_argument("spec")
    p.add_argument("--profile", choices=["smoke", "mini", "paper"], default=None)
    p.add_argument("--seeds", default=None, help="e.g. 0,1,2 or 0-4 (overrides the spec)")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="train one task with one method")
    p.add_argument("--task", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--profile", default="mini", choices=["smoke", "mini", "paper"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                   help='profile field, e.g. epochs=6 or model_kwargs=\'{"width": 0.25}\'')
    p.add_argument("--experiment", default="adhoc")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="run the [tune] block of a spec through Ray Tune")
    p.add_argument("spec")
    p.add_argument("--profile", choices=["smoke", "mini", "paper"], default=None)
    p.add_argument("--searchers", default=None, help="comma list: bayesopt,bohb,random,grid")
    p.add_argument("--tasks", default=None, help="comma list of tasks (default: the spec's)")
    p.add_argument("--samples", type=int, default=None, help="trials per searcher (default: profile's)")
    p.add_argument("--objective", choices=["val", "test"], default=None)
    p.add_argument("--address", default=None, help="Ray cluster address")
    p.add_argument("--cpus-per-trial", type=float, default=None)
    p.add_argument("--gpus-per-trial", type=float, default=None)
    common(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="render tables/figures from the Parquet results")
    p.add_argument("what", help="demo | table1 | transfer | figures | all")
    p.add_argument("--results", default=os.environ.get("MLRSNET_RESULTS", "results"))
    p.add_argument("--out", default="reports")
    p.add_argument("--experiment", default=None)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("data", help="prepare or check datasets")
    dsub = p.add_subparsers(dest="action", required=True)
    dp = dsub.add_parser("prepare", help="build <name>.npz (or the text folder) from the official release")
    dp.add_argument("name")
    dp.add_argument("--source", default=None, help="folder holding the official files, when offline")
    dp.add_argument("--data-dir", default=None)
    dp.add_argument("--no-verify", action="store_true",
                    help="skip checksum verification (only for files you trust)")
    dc = dsub.add_parser("check", help="which datasets are present, sizes and hashes")
    dc.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Before torch starts its OpenMP pool: busy-waiting threads slow 2-core CPUs badly.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "checkpoints", None):
        os.environ["MLRSNET_CHECKPOINTS"] = str(Path(args.checkpoints).resolve())
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"mlrsnet-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nmlrsnet-bench: interrupted; run the same command again to resume "
              "(finished runs are kept, the current one restarts from its last epoch).",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
