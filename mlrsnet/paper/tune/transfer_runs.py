"""Supplement Sec. 5 / Fig. 5: configurations tuned on one task, applied unchanged elsewhere.

After the searches of a spec with ``tune.transfer_to``, the best (alpha0, gamma_M) of each
searcher on the source task (ResNet-18/CIFAR-10) trains MultiStep on every target task
without re-tuning.  The spec's ``[[methods]]`` (e.g. the transferred MLR-SNet) run on the
same targets for comparison.  The runs are ordinary cells through the Ray executor, so
they land in Parquet, skip when finished and resume when interrupted like any other run.
"""

from __future__ import annotations

import sys

from mlrsnet.harness.experiment import Cell, ExperimentSpec, resolved_profile
from mlrsnet.harness.store import Store
from mlrsnet.paper.tasks import get_task
from mlrsnet.paper.tune.plan import TunePlan
from mlrsnet.paper.tune.results import summarize_searches
from mlrsnet.paper.tune.searchers import TITLES
from mlrsnet.paper.tune.skips import data_missing, record_skip
from mlrsnet.paper.tune.tuned import best_of


def transfer_cells(spec: ExperimentSpec, plan: TunePlan, store: Store, source: str,
                   targets: list[str]) -> tuple[list[Cell], list[str]]:
    """The transfer runs, and a note for each searcher that has nothing to transfer."""
    summaries = summarize_searches(store.runs(spec.name), store.read("epochs", spec.name))
    notes: list[str] = []
    cells: list[Cell] = []
    for searcher in plan.searchers:
        best = best_of(summaries, source, spec.profile, searcher, objective=plan.objective)
        if best is None:
            notes.append(f"{searcher}: no finished trial on {source}; nothing to transfer")
            continue
        for name in targets:
            task = get_task(name)
            cells.append(Cell(
                task=name, profile=spec.profile, method=plan.method_for(task.kind),
                hparams=dict(best["best_hparams"]), seed=spec.seeds[0], experiment=spec.name,
                overrides=dict(spec.overrides),
                tags={"transfer_from": source, "search": searcher, "source_run": best["best_run_id"],
                      "source_search_id": best["search_id"]},
                label=f"MultiStep tuned by {TITLES.get(searcher, searcher)}"))
    for m in spec.methods:
        for name in targets:
            cells.append(Cell(task=name, profile=spec.profile, method=m.name, hparams=dict(m.hparams),
                              seed=spec.seeds[0], experiment=spec.name, overrides=dict(spec.overrides),
                              tags={"transfer_compare": True}, label=m.label))
    return cells, notes


def run_transfer(spec: ExperimentSpec, plan: TunePlan, store: Store, *, source, address: str | None,
                 data_dir: str | None, device: str | None, quiet: bool, cpus: float | None,
                 gpus: float | None) -> int:
    """Run the transfer cells; returns the number of failed runs."""
    from mlrsnet.harness.executor import run_ray

    if source is None:
        print("transfer: the source task was skipped; nothing to transfer", file=sys.stderr)
        return 0
    targets = []
    for name in plan.transfer_to:
        task = get_task(name)
        reason = data_missing(task, spec.profile, data_dir)
        if reason:
            if not quiet:
                print(f"transfer: skipping {name}: {reason}", file=sys.stderr)
            record_skip(store, spec, task, "transfer", reason)
        else:
            targets.append(name)
    cells, notes = transfer_cells(spec, plan, store, source.task.name, targets)
    for note in notes:
        print(f"transfer: {note}", file=sys.stderr)
    if not cells:
        return 0
    profiles = [resolved_profile(c) for c in cells]
    cpus = cpus if cpus is not None else max(p.cpus_per_trial for p in profiles)
    gpus = gpus if gpus is not None else max(p.gpus_per_trial for p in profiles)
    if not quiet:
        print(f"transfer: {len(cells)} runs on {len(targets)} targets", file=sys.stderr)
    outcomes = run_ray(cells, store, address=address, data_dir=data_dir,
                       device=None if device in (None, "auto") else device, quiet=quiet,
                       cpus_per_cell=cpus, gpus_per_cell=gpus)
    return sum(1 for o in outcomes.values() if o == "failed")
