"""``mlrsnet-bench reproduce``: every experiment of the supplement, then its report.

A reproduction plan (``benchmarks/reproduce_all.toml``) lists *stages* in dependency order:
``tune`` stages run a spec's searches (:mod:`mlrsnet.paper.tune.command`, at the plan's
*search* profile), ``run`` stages train a figure spec's cells (at its *figure* profile),
where ``tuned = {...}`` method entries take the best configuration of an earlier search
(:mod:`mlrsnet.paper.tune.tuned`), as the paper tuned first and then trained.  A
``PROFILE`` names both, e.g. ``cpu`` = searches at ``mini``, figures at ``cpu``.

Nothing is redone: a finished search or run is skipped, an interrupted one resumes (an
interrupted BOHB search starts again: :attr:`~mlrsnet.paper.tune.searchers.Searcher.restorable`),
so the command can be stopped (Ctrl-C) and started again; a cell another experiment of the
plan already trained is copied rather than trained twice.  Cells whose dataset is not
prepared, or whose search is not complete, get a ``skipped`` row with the reason, which
the report lists instead of drawing an empty panel.  A held-out sweep (a spec's list of
``overrides``, per profile in ``overrides_by_profile``: Fig. 3's held-out sizes) applies to
the methods that read held-out data; the others run once.
Progress: one line per finished run and per stage, with runs done / total and an ETA
from this invocation's pace.  At the end the report is rendered under
``reports/<PROFILE>/`` (:mod:`mlrsnet.paper.report.reproduction`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness.cli import check_writable, parse_seeds
from mlrsnet.harness.experiment import (
    Cell,
    ExperimentSpec,
    SpecError,
    check_keys,
    load_spec,
)
from mlrsnet.harness.registry import get_method, profile_names
from mlrsnet.harness.store import FINAL_STATUSES, SUPERSEDED, Store
from mlrsnet.paper import DEFAULT_PLAN
from mlrsnet.paper.tasks import get_task
from mlrsnet.paper.tune.progress import format_duration
from mlrsnet.paper.tune.skips import data_missing
from mlrsnet.paper.tune.tuned import Resolver

STAGE_KEYS = {"name", "tune", "run", "seeds"}
#: Trial statuses after which a search's trial is not run again.
TRIAL_ENDED = (*FINAL_STATUSES, "stopped")


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str  # "tune" | "run"
    spec_path: Path
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Plan:
    source: Path
    profiles: dict[str, dict[str, str]]
    stages: tuple[Stage, ...]

    def search_profile(self, profile: str) -> str:
        return self.profiles[profile]["search"]

    def figure_profile(self, profile: str) -> str:
        return self.profiles[profile]["figure"]

    def profile_of(self, stage: Stage, profile: str) -> str:
        return self.search_profile(profile) if stage.kind == "tune" else self.figure_profile(profile)


def _fail(source: Path, key: str, problem: str) -> SpecError:
    return SpecError(f"{source}: key {key!r}: {problem}")


def load_plan(path: str | Path) -> Plan:
    """Read and validate a reproduction plan (errors name the file and the key)."""
    source = Path(path)
    if not source.is_file():
        raise SpecError(f"reproduction plan {str(source)!r} does not exist (default: {DEFAULT_PLAN})")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    known = set(profile_names())
    profiles = data.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise _fail(source, "profiles", "must map each PROFILE to { search = ..., figure = ... }")
    for name, entry in profiles.items():
        if not isinstance(entry, dict) or set(entry) != {"search", "figure"}:
            raise _fail(source, f"profiles.{name}", "must be { search = PROFILE, figure = PROFILE }")
        for role, value in entry.items():
            if value not in known:
                raise _fail(source, f"profiles.{name}.{role}",
                            f"{value!r} is not a profile; allowed: {', '.join(sorted(known))}")
    root = source.resolve().parent.parent  # specs are named relative to the repository root
    stages = []
    raw = data.get("stages")
    if not isinstance(raw, list) or not raw:
        raise _fail(source, "stages", "must be a non-empty list of [[stages]] tables")
    for i, s in enumerate(raw):
        where = f"stages[{i}]"
        if not isinstance(s, dict):
            raise _fail(source, where, "must be a table")
        check_keys(s, STAGE_KEYS, str(source), where)
        kinds = [k for k in ("tune", "run") if k in s]
        if len(kinds) != 1:
            raise _fail(source, where, "needs exactly one of 'tune = SPEC' or 'run = SPEC'")
        spec_path = root / str(s[kinds[0]])
        if not spec_path.is_file():
            raise _fail(source, f"{where}.{kinds[0]}", f"{s[kinds[0]]!r} does not exist")
        seeds = s.get("seeds")
        if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(x, int) for x in seeds)):
            raise _fail(source, f"{where}.seeds", "must be a list of integers")
        stages.append(Stage(name=str(s.get("name") or spec_path.stem), kind=kinds[0], spec_path=spec_path,
                            seeds=tuple(seeds) if seeds else None))
    return Plan(source, {k: dict(v) for k, v in profiles.items()}, tuple(stages))


def select(plan: Plan, only: str | None) -> list[Stage]:
    if not only:
        return list(plan.stages)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {s.name for s in plan.stages}
    bad = [n for n in names if n not in known]
    if bad:
        raise UserError(f"--only {bad[0]!r}: no such stage in {plan.source}; stages: {', '.join(known)}")
    return [s for s in plan.stages if s.name in names]


# -- the cells of a run stage -----------------------------------------------------------------
def stage_spec(stage: Stage, profile: str, seeds: list[int] | None) -> ExperimentSpec:
    """The stage's spec at ``profile`` (its overrides or sweep there: ``overrides_by_profile``),
    with the plan's or the command's seeds."""
    return load_spec(stage.spec_path, profile=profile,
                     seeds=seeds if seeds is not None else (list(stage.seeds) if stage.seeds else None))


def record_stage(store: Store, stage: Stage, profile: str, seeds: list[int] | None,
                 data_dir: str | None) -> None:
    """Store a run stage's resolved spec beside its results (:meth:`Store.write_spec`): its
    methods in order, labels, seeds and the held-out sweep at ``profile``, and its tasks'
    reference values, so its report is drawn from the store alone.  (A tune stage's search
    records its own.)"""
    from mlrsnet.paper.report.references import stored_spec

    spec = stage_spec(stage, profile, seeds)
    store.write_spec(spec.name, stored_spec(spec, data_dir))


def unswept(cell: Cell, swept: bool) -> Cell:
    """A held-out-size sweep applies to the methods that read held-out data; a method that
    reads none would train the same run once per size, so its cells lose the ``holdout``
    override (and then coincide).  A cell whose method is not known yet (an unresolved
    ``tuned`` entry) is left as it is."""
    if swept and cell.method and not get_method(cell.method).uses_held_out:
        return cell.with_(overrides={k: v for k, v in cell.overrides.items() if k != "holdout"})
    return cell


def _skip_row(store: Store, cell: Cell, reason: str) -> None:
    """A ``skipped`` row for a cell that cannot run yet; the report lists it with ``reason``."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    prior = store.run_row(cell.experiment, cell.run_id)
    if prior is not None and (prior["status"] != "skipped" or prior["error"] == reason):
        return  # trained since, or already said
    store.write_run_row({"run_id": cell.run_id, "experiment": cell.experiment, "task": cell.task,
                         "profile": cell.profile, "method": cell.method or "(tuned)",
                         "hparams": dict(cell.hparams), "seed": cell.seed,
                         "tags": {**dict(cell.tags), "label": cell.label, "skipped": True},
                         "overrides": dict(cell.overrides), "status": "skipped", "error": reason,
                         "started": now, "finished": now})


def run_stage_cells(stage: Stage, profile: str, search_profile: str, store: Store, data_dir: str | None,
                    seeds: list[int] | None) -> tuple[list[Cell], list[tuple[Cell, str]]]:
    """The cells a run stage trains now, and the ones it cannot yet, with the reason (the
    dataset is not prepared, or the search it takes its configuration from has not run)."""
    spec = stage_spec(stage, profile, seeds)
    missing = {t: data_missing(get_task(t), profile, data_dir) for t in spec.tasks}
    resolver = Resolver(store, search_profile)
    ready, blocked = [], []
    for cell in spec.cells():
        if missing[cell.task]:
            blocked.append((cell, missing[cell.task]))
            continue
        resolved, why = resolver.resolve(cell)
        if resolved is None:
            blocked.append((cell, why))
        else:
            ready.append(resolved)
    swept = bool(spec.override_sweep)
    ready_cells = {c.run_id: c for c in (unswept(c, swept) for c in ready)}
    blocked_cells = {c.run_id: (c, why) for c, why in ((unswept(c, swept), why) for c, why in blocked)}
    return list(ready_cells.values()), list(blocked_cells.values())


def reuse(store: Store, cell: Cell, others: list[str], progress: Progress,
          data_dir: str | None = None) -> bool:
    """Whether ``cell`` is already done here, or was trained by another experiment of the
    plan (the run id does not depend on the experiment), in which case its rows are copied
    (:meth:`~mlrsnet.harness.store.Store.copy_run`) instead of training it twice."""
    from mlrsnet.harness.executor import stands

    if store.is_done(cell.experiment, cell.run_id):
        return False  # the executor reports it as skipped, or trains it again
    for other in others:
        # trained as the reproduction trains it: through Ray, with its profile's GPUs
        gpus = get_task(cell.task).profile(cell.profile).gpus_per_trial
        if stands(cell.with_(experiment=other), store, data_dir, gpus=gpus):
            row = store.run_row(other, cell.run_id) or {}
            tags = {**dict(row.get("tags") or {}), **({"label": cell.label} if cell.label else {})}
            store.copy_run(other, cell.experiment, cell.run_id, tags=tags)
            progress.ran(cell, f"{row.get('status')} (the run of {other}, copied)")
            return True
    return False


def _slot(task: Any, label: Any, seed: Any, overrides: Any) -> tuple[str, str, int, str]:
    """What a figure draws one run for: task, method label, seed and profile overrides."""
    return (str(task), str(label), int(seed), json.dumps(dict(overrides or {}), sort_keys=True))


def supersede(store: Store, experiment: str, cells: list[Cell]) -> int:
    """Mark ``superseded`` the finished runs of ``experiment`` that stand in the same slot
    (task, label, seed, overrides) as one of ``cells`` that is done now under another run
    id: a tuned method whose search was run again (e.g. after its profile was redefined)
    trains the new best configuration, and the figure must not draw the old one beside it.
    The old rows keep their curves; only their status and error change.  Returns how many."""
    runs = store.runs(experiment)
    if runs.empty:
        return 0
    current = {_slot(c.task, c.label, c.seed, c.overrides): c.run_id for c in cells
               if c.label and store.is_done(experiment, c.run_id)}  # runs record it as tags["label"]
    n = 0
    for row in runs.drop_duplicates("run_id", keep="last").to_dict("records"):
        if row["status"] not in FINAL_STATUSES:
            continue
        new = current.get(_slot(row["task"], (row.get("tags") or {}).get("label"), row["seed"],
                                row.get("overrides")))
        if new is not None and new != row["run_id"]:
            full = store.run_row(experiment, row["run_id"]) or row
            store.write_run_row({**full, "status": SUPERSEDED,
                                 "error": f"superseded by run {new} (the configuration of its label was found again)"})
            n += 1
    return n


# -- progress ---------------------------------------------------------------------------------
def tune_trials(stage: Stage, profile: str, data_dir: str | None) -> int:
    """About how many trials a tune stage trains (its searchers' budgets on the tasks whose
    data are present; grid budgets as given, not capped)."""
    from mlrsnet.paper.tune.plan import parse_tune_block

    spec = load_spec(stage.spec_path, profile=profile)
    plan = parse_tune_block(spec.tune, str(stage.spec_path))
    n = 0
    for t in spec.tasks:
        task = get_task(t)
        if data_missing(task, profile, data_dir):
            continue
        n += sum(plan.samples_for(profile, s, task.profile(profile).tune_samples) for s in plan.searchers)
    return n


def ended_runs(store: Store, experiment: str, data_dir: str | None = None) -> int:
    """Runs (or a search experiment's trials: of its newest searches only, not those of a
    search started again) that ended and still stand: on the same data, at the profile as
    defined now (a run or search of a since-redefined profile is trained again)."""
    from mlrsnet.harness.executor import data_search_dirs, row_stands
    from mlrsnet.paper.tune.results import latest_searches, trial_runs

    runs = store.runs(experiment)
    if runs.empty:
        return 0
    runs = runs.drop_duplicates("run_id", keep="last")
    trials = trial_runs(runs)
    if len(trials):
        runs = latest_searches(trials)
    ended = runs[runs["status"].isin(TRIAL_ENDED)]
    dirs = data_search_dirs(data_dir)
    # a search trial trains with as many threads as CPUs per trial, a figure run with one
    return sum(row_stands(row, dirs, trial=bool(len(trials))) for row in ended.to_dict("records"))


class Progress:
    """Runs done / total over the whole reproduction, with an ETA from this invocation's pace."""

    def __init__(self, total: int, done: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, done, quiet
        self.start_done, self.t0 = done, time.monotonic()

    def line(self, what: str) -> str:
        elapsed = time.monotonic() - self.t0
        new = self.done - self.start_done
        eta = elapsed / new * max(self.total - self.done, 0) if new > 0 else None
        left = ("nothing left to run" if self.done >= self.total
                else f"ETA {format_duration(eta) if eta is not None else 'after the first run'}")
        return f"reproduce: {what} | runs {self.done}/{self.total}, elapsed {format_duration(elapsed)}, {left}"

    def say(self, what: str) -> None:
        if not self.quiet:
            print(self.line(what), file=sys.stderr, flush=True)

    def ran(self, cell: Cell, outcome: str) -> None:
        if outcome.split(" ")[0] in TRIAL_ENDED:
            self.done += 1
        self.say(f"{cell.experiment}: {cell.task} {cell.label or cell.method} seed {cell.seed}: {outcome}")


# -- the command ------------------------------------------------------------------------------
def _tune_args(args: argparse.Namespace, stage: Stage, profile: str) -> argparse.Namespace:
    return argparse.Namespace(
        spec=str(stage.spec_path), profile=profile, searchers=None, tasks=None, samples=None,
        objective=None, address=args.address, cpus_per_trial=None, gpus_per_trial=None,
        data_dir=args.data_dir, results=args.results, device=args.device, quiet=args.quiet,
        force=False)


@dataclass(frozen=True)
class StageCount:
    """What one stage trains: ``total`` runs or trials (cells without data not counted,
    cells waiting for a search counted), of which ``blocked`` cannot run yet (a run stage's
    cells without data or without their search), and ``ended`` so far."""

    stage: Stage
    profile: str
    total: int
    blocked: int
    ended: int
    listed: int  # a run stage's cells, counting those without data (the plan lists them)


def stage_count(plan: Plan, stage: Stage, profile: str, store: Store, data_dir: str | None,
                seeds: list[int] | None) -> StageCount:
    prof = plan.profile_of(stage, profile)
    ended = ended_runs(store, stage.name, data_dir)
    if stage.kind == "tune":
        n = tune_trials(stage, prof, data_dir)
        return StageCount(stage, prof, n, 0, ended, n)
    cells, blocked = run_stage_cells(stage, prof, plan.search_profile(profile), store, data_dir, seeds)
    waiting = sum(1 for c, _ in blocked if not data_missing(get_task(c.task), prof, data_dir))
    return StageCount(stage, prof, len(cells) + waiting, len(blocked), ended, len(cells) + len(blocked))


def plan_lines(plan: Plan, stages: list[Stage], profile: str, store: Store, data_dir: str | None,
               seeds: list[int] | None) -> list[str]:
    out = [f"reproduction plan {plan.source} at PROFILE={profile} (searches at "
           f"{plan.search_profile(profile)}, figures at {plan.figure_profile(profile)}):"]
    for s in stages:
        c = stage_count(plan, s, profile, store, data_dir, seeds)
        if s.kind == "tune":
            out.append(f"  {s.name}: tune {s.spec_path.name} at {c.profile}: about {c.total} trials, "
                       f"{c.ended} ended so far")
        else:
            out.append(f"  {s.name}: run {s.spec_path.name} at {c.profile}: {c.listed} runs "
                       f"({c.blocked} cannot run yet), {c.ended} ended so far")
    return out


def count_runs(plan: Plan, stages: list[Stage], profile: str, store: Store, data_dir: str | None,
               seeds: list[int] | None) -> tuple[int, int]:
    """(about how many runs and trials the stages train, how many have ended): cells
    without data are not counted, cells waiting for a search are."""
    counts = [stage_count(plan, s, profile, store, data_dir, seeds) for s in stages]
    total = sum(c.total for c in counts)
    return total, min(sum(c.ended for c in counts), total)


def report_dir(args: argparse.Namespace, profile: str) -> Path:
    """Where the report goes: ``--out``, default ``reports/<PROFILE>``."""
    return Path(args.out) if args.out else Path("reports") / profile


def render(plan: Plan, stages: list[Stage], profile: str, store: Store, args: argparse.Namespace) -> list[Path]:
    """The report of the stages under ``--out`` (default ``reports/<PROFILE>``)."""
    from mlrsnet.paper.report.reproduction import Entry, render_reproduction

    data_dir = args.data_dir or os.environ.get("MLRSNET_DATA_DIR")
    total, done = count_runs(plan, stages, profile, store, data_dir, parse_seeds(args.seeds))
    status = f"Runs and search trials ended: {done} of about {total}."
    if done < total:
        status += (f" The reproduction is not complete: `make reproduce-all PROFILE={profile}` continues it "
                   "(finished runs are kept); what is not drawn yet is listed below.")

    entries = []
    for s in stages:
        spec = load_spec(s.spec_path, profile=plan.profile_of(s, profile))
        entries.append(Entry(s.name, s.kind, spec.description or s.name))
    out = report_dir(args, profile)
    command = f"mlrsnet-bench reproduce --profile {profile} --results {args.results}"
    return render_reproduction(store, out, entries=entries, profile=profile, command=command, status=status)


#: ``reproduce --force`` is refused (it was accepted and silently ignored): a reproduction
#: never redoes finished work, and a forced re-run of a whole plan would overwrite the runs a
#: published report draws (a re-run part is marked superseded, never deleted).
FORCE_REFUSED = (
    "reproduce does not take --force: it never redoes finished work (finished runs and complete "
    "searches are kept, interrupted ones resume). To redo one part, re-run it on its own with "
    "`mlrsnet-bench run SPEC --force` or `mlrsnet-bench tune SPEC --force` (same --results), "
    "or reproduce into a fresh --results folder")


def reproduce_command(args: argparse.Namespace) -> int:
    from mlrsnet.harness.executor import run_ray
    from mlrsnet.paper.tune.command import tune_command

    if getattr(args, "force", False):
        raise UserError(FORCE_REFUSED)
    plan = load_plan(args.plan)
    profile = args.profile
    if profile not in plan.profiles:
        raise UserError(f"PROFILE {profile!r} is not in {plan.source}; allowed: {', '.join(plan.profiles)}")
    stages = select(plan, args.only)
    seeds = parse_seeds(args.seeds)
    data_dir = args.data_dir or os.environ.get("MLRSNET_DATA_DIR")
    store = Store(Path(args.results))
    search_profile = plan.search_profile(profile)
    if not (args.plan_only or args.render_only):
        from mlrsnet.paper.tune.skips import require_data

        by_profile: dict[str, dict[str, Any]] = {}
        for s in stages:
            spec = load_spec(s.spec_path, profile=plan.profile_of(s, profile))
            by_profile.setdefault(spec.profile, {}).update({t: get_task(t) for t in spec.tasks})
        for prof, tasks in by_profile.items():
            require_data(list(tasks.values()), prof, data_dir, f"`mlrsnet-bench reproduce --profile {profile}`")
    if args.plan_only:
        print("\n".join(plan_lines(plan, stages, profile, store, data_dir, seeds)))
        return 0
    # both output folders, before the first stage (a read-only one ended in a traceback)
    check_writable(report_dir(args, profile), "--out", "--out DIR")
    if not args.render_only:
        check_writable(args.results, "--results", "--results DIR or $MLRSNET_RESULTS")
    if args.render_only:
        for path in render(plan, stages, profile, store, args)[:1]:
            print(path)
        return 0
    total, done = count_runs(plan, stages, profile, store, data_dir, seeds)
    progress = Progress(total, done, args.quiet)
    progress.say(f"{len(stages)} stages at PROFILE={profile} (searches at {search_profile}, figures at "
                 f"{plan.figure_profile(profile)}) -> {store.root}")
    failed = 0
    for k, s in enumerate(stages, 1):
        prof = plan.profile_of(s, profile)
        before = ended_runs(store, s.name, data_dir)
        progress.say(f"stage {k}/{len(stages)} {s.name} ({s.kind} {s.spec_path.name} at {prof})")
        if s.kind == "tune":
            code = tune_command(_tune_args(args, s, prof))
            if code == 130:
                return 130
            failed += code != 0
            progress.done += ended_runs(store, s.name, data_dir) - before
        else:
            record_stage(store, s, prof, seeds, data_dir)
            cells, blocked = run_stage_cells(s, prof, search_profile, store, data_dir, seeds)
            said: set[tuple[str, str]] = set()
            for cell, why in blocked:
                _skip_row(store, cell, why)
                if not args.quiet and (cell.task, str(cell.label)) not in said:
                    said.add((cell.task, str(cell.label)))
                    print(f"reproduce: {s.name}: {cell.task} {cell.label}: not run: {why}", file=sys.stderr)
            others = [r.name for r in plan.stages if r.kind == "run" and r.name != s.name]
            planned = cells
            cells = [c for c in cells if not reuse(store, c, others, progress, data_dir)]
            if cells:
                profiles = [get_task(c.task).profile(prof) for c in cells]  # the task profile's resources
                outcomes = run_ray(cells, store, address=args.address, data_dir=data_dir,
                                   device=None if args.device in (None, "auto") else args.device,
                                   quiet=True, cpus_per_cell=max(p.cpus_per_trial for p in profiles),
                                   gpus_per_cell=max(p.gpus_per_trial for p in profiles),
                                   progress=progress.ran)
                failed += sum(1 for o in outcomes.values() if o == "failed")
            old = supersede(store, s.name, planned)
            if old and not args.quiet:
                print(f"reproduce: {s.name}: {old} runs of an earlier configuration of the same "
                      "label marked superseded (kept, not drawn)", file=sys.stderr)
        progress.say(f"stage {k}/{len(stages)} {s.name} done")
    paths = render(plan, stages, profile, store, args)
    progress.say(f"report: {paths[0]}")
    return 1 if failed else 0
