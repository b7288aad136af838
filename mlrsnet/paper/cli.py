"""The paper's ``mlrsnet-bench`` sub-commands: ``list``, ``tune``, ``report``, ``reproduce``
and ``data``.

Registered through the ``mlrsnet.commands`` entry-point group (see
:mod:`mlrsnet.harness.registry`), so the harness's command line never imports this layer.
:func:`register` runs for every ``mlrsnet-bench`` call, ``--help`` included: it imports
nothing heavy (torch, pandas, Ray Tune); each command imports what it needs when it runs
(``tests/harness/test_cli_startup.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from mlrsnet.harness.cli import add_common_options, profile_choices
from mlrsnet.harness.registry import scan
from mlrsnet.paper import DEFAULT_PLAN


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "tasks":
        from mlrsnet.paper.report.tasks_table import tasks_table

        print(tasks_table())
        return 0
    found = scan()
    registry = found.methods
    for bad in found.broken:
        print(f"mlrsnet-bench: warning: {bad.message()}", file=sys.stderr)
    if args.markdown:
        from mlrsnet.paper.report.methods_list import methods_list

        print(methods_list(registry))
        return 0
    width = max(len(n) for n in registry)
    for name in sorted(registry):
        cls = registry[name]
        defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
        print(f"{name:<{width}}  {cls.description or ''}".rstrip())
        if defaults:
            print(f"{'':<{width}}  defaults: {defaults}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from mlrsnet.paper.tune import tune_command

    return tune_command(args)


def cmd_report(args: argparse.Namespace) -> int:
    from mlrsnet.harness.cli import check_writable
    from mlrsnet.paper.report import render

    check_writable(args.out, "--out", "--out DIR")
    paths = render(args.what, results=Path(args.results), out=Path(args.out), experiment=args.experiment)
    for path in paths:
        print(path)
    for path in paths:  # a report's one-screen summary, printed last
        if Path(path).name.endswith("_summary.txt"):
            print("\n" + Path(path).read_text(), end="")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from mlrsnet.paper.reproduce import reproduce_command

    return reproduce_command(args)


def cmd_data(args: argparse.Namespace) -> int:
    from mlrsnet.paper import data

    if args.action == "prepare":
        for name in dict.fromkeys(args.name):
            path = data.prepare(name, data_dir=args.data_dir,
                                source=Path(args.source) if args.source else None,
                                verify=not args.no_verify)
            print(f"prepared {name}: {path}", flush=True)
        return 0
    rows = data.check(data_dir=args.data_dir)
    # a dataset none of whose files is present is listed once; a partial one per missing file
    present_names = {r["name"] for r in rows if r.get("present")}
    listed: set[str] = set()
    for r in rows:
        if r.get("present"):
            verified = {True: "verified", False: "CHECKSUM MISMATCH", None: ""}[r.get("verified")]
            print(f"{r['name']:<14} {r.get('kind', ''):<5} {r.get('bytes', 0):>12,d} B  "
                  f"sha256 {str(r.get('sha256', ''))[:16]}  {verified:<8} {r.get('path')}")
        elif r["name"] in present_names:
            print(f"{r['name']:<14} missing {r.get('file')} (prepare with: mlrsnet-bench data prepare {r['name']})")
        elif r["name"] not in listed:
            listed.add(r["name"])
            print(f"{r['name']:<14} missing (prepare with: mlrsnet-bench data prepare {r['name']})")
    mismatched = [r for r in rows if r.get("present") and r.get("verified") is False]
    if mismatched:
        print(f"mlrsnet-bench: error: {len(mismatched)} file(s) differ from the published sha256 "
              f"({', '.join(str(r['path']) for r in mismatched)}): they are damaged or not the "
              "real data; delete them and prepare them again (`mlrsnet-bench data prepare NAME`)",
              file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    """Add the paper's sub-commands to ``mlrsnet-bench``'s sub-parsers."""
    from mlrsnet.paper.report import REPORTS
    from mlrsnet.paper.tune.searchers import SEARCHERS

    p = sub.add_parser("list", help="list tasks or methods")
    p.add_argument("what", choices=["tasks", "methods"])
    p.add_argument("--markdown", action="store_true",
                   help="methods: the README's Markdown list (python -m mlrsnet.paper.report.methods_list README.md "
                        "writes it there)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("tune", help="run the [tune] block of a spec through Ray Tune")
    p.add_argument("spec")
    p.add_argument("--profile", choices=profile_choices(), default=None, metavar="PROFILE",
                   help="one of %(choices)s (default: the spec's)")
    p.add_argument("--searchers", default=None, help=f"comma list: {','.join(SEARCHERS)}")
    p.add_argument("--tasks", default=None, help="comma list of tasks (default: the spec's)")
    p.add_argument("--samples", type=int, default=None, help="trials per searcher (default: profile's)")
    p.add_argument("--objective", choices=["val", "test"], default=None)
    p.add_argument("--address", default=None, help="Ray cluster address")
    p.add_argument("--cpus-per-trial", type=float, default=None)
    p.add_argument("--gpus-per-trial", type=float, default=None)
    add_common_options(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="render tables/figures from the Parquet results")
    p.add_argument("what", choices=list(REPORTS), help="which report to render")
    p.add_argument("--results", default=os.environ.get("MLRSNET_RESULTS", "results"))
    p.add_argument("--out", default="reports")
    p.add_argument("--experiment", default=None)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reproduce", help="every experiment of the supplement in order, then the report")
    p.add_argument("--plan", default=DEFAULT_PLAN, help=f"reproduction plan (default {DEFAULT_PLAN})")
    p.add_argument("--profile", default="cpu", help="a PROFILE of the plan: smoke, mini, cpu (default), paper")
    p.add_argument("--only", default=None, help="comma list of stage names (default: all)")
    p.add_argument("--seeds", default=None, help="seeds of the figure runs, e.g. 0 or 0-1 (default: the specs')")
    p.add_argument("--plan-only", "--list", dest="plan_only", action="store_true",
                   help="print the stages and their runs, train nothing")
    p.add_argument("--render-only", action="store_true",
                   help="render the report from the results already there, train nothing")
    p.add_argument("--out", default=None, help="report folder (default reports/<PROFILE>)")
    p.add_argument("--address", default=None, help="Ray cluster address")
    add_common_options(p)
    for action in p._actions:  # the common --force is refused (reproduce.FORCE_REFUSED)
        if "--force" in action.option_strings:
            action.help = "refused: reproduce never redoes finished work (re-run one spec with run/tune --force)"
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("data", help="prepare or check datasets")
    dsub = p.add_subparsers(dest="action", required=True)
    dp = dsub.add_parser("prepare", help="build <name>.npz (or the text folder) from the official release")
    dp.add_argument("name", nargs="+", help="one or more of cifar10, cifar100, svhn, tinyimagenet, ptb, wikitext-2")
    dp.add_argument("--source", default=None, help="folder holding the official files, when offline")
    dp.add_argument("--data-dir", default=None)
    dp.add_argument("--no-verify", action="store_true",
                    help="skip checksum verification (only for files you trust)")
    dc = dsub.add_parser("check", help="which datasets are present, sizes and hashes")
    dc.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_data)
