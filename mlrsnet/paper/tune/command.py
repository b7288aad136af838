"""``mlrsnet-bench tune SPEC``: every (task, searcher) search of a spec's ``[tune]`` block.

Searches run one after another; inside a search, trials run concurrently on the Ray
instance (all local cores, or the cluster at ``--address``) with the task profile's
resources per trial.  Tasks whose data are missing are skipped with the reason recorded
in the store, so Table 1 lists them.  Exit codes: 0 all trials ended (finished, diverged
or stopped early), 1 some trial failed (running the command again retries it), 2 a user
error (an unreachable ``--address`` included), 3 the Ray cluster went away mid-search,
130 interrupted (running the command again resumes after 1, 3 and 130).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness.cluster import ClusterLost, head_alive, lost_message, watch
from mlrsnet.harness.experiment import (
    Cell,
    ExperimentSpec,
    load_spec,
    resolved_profile,
)
from mlrsnet.harness.store import Store
from mlrsnet.paper.report.references import stored_spec
from mlrsnet.paper.tasks import Task, get_task
from mlrsnet.paper.tune.objective import Objective, objective_for
from mlrsnet.paper.tune.plan import TunePlan, parse_tune_block, with_cli_overrides
from mlrsnet.paper.tune.progress import format_duration, format_hparams, format_metric
from mlrsnet.paper.tune.search import SearchOutcome, SearchRequest, is_complete, run_search
from mlrsnet.paper.tune.searchers import get_searcher
from mlrsnet.paper.tune.skips import data_missing, record_skip, require_data
from mlrsnet.paper.tune.spaces import grid_candidates, grid_size, grid_subset, ray_space, resolve_space
from mlrsnet.paper.tune.trial import TrialSetup


@dataclass(frozen=True)
class TaskPlan:
    task: Task
    method: str
    space: dict[str, tuple]
    objective: Objective
    epochs: int
    cpus: float
    gpus: float


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def vocabulary_size(task: Task, data_dir: str | None, cap: int | None = None) -> int:
    """The vocabulary a run trains with: the corpus's, or the profile's cap when smaller."""
    from mlrsnet.paper.data import load_corpus

    size = load_corpus(task.dataset, data_dir).vocab_size
    return size if cap is None else min(size, cap)


def task_plan(task: Task, spec: ExperimentSpec, plan: TunePlan, data_dir: str | None,
              args: argparse.Namespace) -> TaskPlan:
    from mlrsnet.harness.registry import get_method

    method = plan.method_for(task.kind)
    cls = get_method(method)
    space = resolve_space(cls.space(task.kind), plan.space, list(cls.defaults))
    probe = Cell(task=task.name, profile=spec.profile, method=method, overrides=dict(spec.overrides))
    prof = resolved_profile(probe)
    vocab = vocabulary_size(task, data_dir, prof.vocab_size) if task.kind == "text" else None
    cpus = args.cpus_per_trial if args.cpus_per_trial is not None else prof.cpus_per_trial
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else prof.gpus_per_trial
    if cpus <= 0 or gpus < 0:
        raise UserError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    return TaskPlan(task, method, space, objective_for(task.kind, plan.objective, vocab),
                    prof.epochs, float(cpus), float(gpus))


def budget(plan: TunePlan, tp: TaskPlan, profile: str, searcher: str, cli_samples: int | None) -> int:
    """Trials for one search: ``--samples``, else the spec's per-profile samples, else the
    task profile's ``tune_samples``; grid search is capped at its number of points."""
    n = cli_samples if cli_samples is not None else plan.samples_for(
        profile, searcher, tp.task.profile(profile).tune_samples)
    if n < 1:
        raise UserError(f"--samples must be at least 1, got {n}")
    if get_searcher(searcher).samples_are_grid_points:
        points = grid_subset(grid_candidates(tp.space, plan.grid), n)
        return grid_size(points)
    return n


def ensure_ray(address: str | None, quiet: bool):
    """Connect to ``address`` or start a local instance (:func:`mlrsnet.harness.cluster.connect`:
    an unreachable address or a refused token fails fast with one paragraph, and one line
    names the cluster); returns the :class:`~mlrsnet.harness.cluster.Connection`."""
    from mlrsnet.harness.cluster import connect

    # Tune's own console tables are replaced by mlrsnet.paper.tune.progress.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from mlrsnet.harness.process_env import forwarded_env

    return connect(address, quiet=quiet, env=forwarded_env())


def check_resources(plans: list[TaskPlan], address: str | None) -> None:
    """Refuse a search whose trials could never be scheduled (Tune would wait forever)."""
    import ray

    have = ray.cluster_resources()
    for tp in plans:
        if tp.gpus > have.get("GPU", 0.0):
            raise UserError(
                f"task {tp.task.name}: each trial asks for {tp.gpus:g} GPU(s) but the Ray "
                f"{'cluster' if address else 'instance'} has {have.get('GPU', 0.0):g}; "
                "pass --gpus-per-trial 0 (and a smaller --profile) or --address of a GPU cluster")
        if tp.cpus > have.get("CPU", 0.0):
            raise UserError(
                f"task {tp.task.name}: each trial asks for {tp.cpus:g} CPUs but only "
                f"{have.get('CPU', 0.0):g} are available; pass --cpus-per-trial")


def search_overrides(spec: ExperimentSpec, tp: TaskPlan) -> dict[str, Any]:
    """The spec's overrides, plus the profile's ``holdout`` when the objective is measured on
    the held-out images: a trial of a method that reads no held-out data would otherwise
    train on the whole split (``resolved_profile``) and have no validation metric."""
    overrides = dict(spec.overrides)
    if tp.objective.split == "val" and tp.task.kind == "image" and "holdout" not in overrides:
        overrides["holdout"] = tp.task.profile(spec.profile).holdout
    return overrides


def trial_device(tp: TaskPlan, spec: ExperimentSpec, overrides: dict[str, Any], device: str | None) -> str:
    """The device the trials train on: ``--device`` if given, else CUDA when a trial asks for
    GPUs and the CPU when it asks for none (Ray hides the GPUs of such a trial); a profile
    sized for GPUs given none is refused unless ``--device cpu``
    (:func:`mlrsnet.harness.executor.ray_device`)."""
    from mlrsnet.harness.executor import ray_device

    probe = Cell(task=tp.task.name, profile=spec.profile, method=tp.method, overrides=overrides)
    return ray_device([probe], device, tp.gpus)


def test_epochs(tp: TaskPlan, searcher: str, options: dict[str, Any]) -> tuple[int, ...] | None:
    """The epochs after which a trial evaluates the test split: every epoch (None) when the
    objective is the test metric; otherwise only where the trial can end (its last epoch and
    the scheduler's rungs, :func:`~mlrsnet.paper.tune.searchers.stop_epochs`), so each
    trial's final test metric is still recorded while the per-epoch test passes (a fifth of
    a ``mini`` trial) are saved.  Training is unchanged: evaluation draws no random
    numbers and moves no state."""
    from mlrsnet.paper.tune.searchers import stop_epochs

    if tp.objective.split == "test":
        return None
    return tuple(sorted(stop_epochs(searcher, options, tp.epochs)))


def describe(outcome: SearchOutcome, objective: Objective) -> str:
    best = outcome.best or {}
    parts = [f"{outcome.trials} trials"]
    for key in ("stopped", "diverged", "failed"):
        if best.get(key):
            parts.append(f"{best[key]} {'stopped early' if key == 'stopped' else key}")
    text = ", ".join(parts)
    if best.get("best_hparams"):
        text += (f"; best {objective.split} {objective.metric} "
                 f"{format_metric(objective, best['best_value'])} ({format_hparams(best['best_hparams'])})")
    return text + f" in {format_duration(outcome.wall_s)}"


def tune_command(args: argparse.Namespace) -> int:
    from mlrsnet.harness.cli import check_results_writable

    spec = load_spec(args.spec, profile=args.profile)
    source = str(spec.source or args.spec)
    plan = with_cli_overrides(parse_tune_block(spec.tune, source), searchers=args.searchers,
                              objective=args.objective)
    if len(spec.seeds) != 1:
        raise UserError(f"{source}: a tuning spec runs its trials with one seed; got seeds {list(spec.seeds)}")
    names = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(spec.tasks)
    tasks = [get_task(n) for n in names if n]
    if plan.transfer_to and len(tasks) != 1:
        raise UserError(f"{source}: tune.transfer_to needs exactly one tuned (source) task; got {names}")
    quiet = bool(args.quiet)
    check_results_writable(args.results)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    if data_dir is None and os.environ.get("MLRSNET_DATA_DIR"):
        data_dir = str(Path(os.environ["MLRSNET_DATA_DIR"]).resolve())
    store = Store(Path(args.results).resolve())
    require_data([*tasks, *(get_task(n) for n in plan.transfer_to)], spec.profile, data_dir,
                 f"`mlrsnet-bench tune {source}`")
    from mlrsnet.harness.ray_helpers import end_orphans

    end_orphans(lambda msg: _say(msg, quiet))  # also when no search needs Ray this time
    with search_lock(store, spec.name):
        store.write_spec(spec.name, stored_spec(spec, data_dir))
        return _tune(args, spec, plan, tasks, store, data_dir, quiet, source)


def search_lock(store: Store, experiment: str) -> contextlib.AbstractContextManager[Any]:
    """One ``tune`` at a time per experiment and results folder: its searches' Tune state,
    trials' rows and epoch checkpoints are this process's while it runs.  The lock
    (``<experiment>/locks/tune.lock``, a :class:`~mlrsnet.harness.store.RunLock` with its
    heartbeat) is held for the whole command; a second ``tune`` (or ``reproduce`` at a tune
    stage) on the same experiment is refused with exit code 2 naming the holder, before it
    reads or writes anything.  A holder that died is taken for gone as a run's is (its pid
    on this host, its heartbeat on another)."""
    from mlrsnet.harness.store import RunClaimed

    lock = store.lock(experiment, "tune")
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(lock.holding("tune"))
    except RunClaimed as exc:
        since = exc.owner.get("since", "?")
        raise UserError(
            f"the searches of experiment {experiment} in {store.root} are being run by another "
            f"`mlrsnet-bench tune` or `reproduce` ({lock.describe(exc.owner)}, started {since}); two "
            "searches on one results folder would take over each other's trials. Wait for it to end "
            "(then this command resumes or reads its searches), or pass another --results folder") from None
    return stack


def _tune(args: argparse.Namespace, spec: ExperimentSpec, plan: TunePlan, tasks: list[Task], store: Store,
          data_dir: str | None, quiet: bool, source: str) -> int:
    runnable: list[TaskPlan] = []
    for task in tasks:
        reason = data_missing(task, spec.profile, data_dir)
        if reason:
            _say(f"skipping {task.name}: {reason}", quiet)
            for searcher in plan.searchers:
                record_skip(store, spec, task, searcher, reason)
            continue
        runnable.append(task_plan(task, spec, plan, data_dir, args))

    requests = []
    for tp in runnable:
        for searcher in plan.searchers:
            n = budget(plan, tp, spec.profile, searcher, args.samples)
            opts = plan.options_for(spec.profile, searcher)
            space = ray_space(tp.space, searcher, budget=n, grid=plan.grid, options=opts)
            tags = {"search": searcher, "searcher_seed": plan.seed_for(spec.profile, searcher),
                    "objective": tp.objective.key,
                    "space_encoding": get_searcher(searcher).encoding(opts)}
            if opts:
                tags["searcher_options"] = opts
            overrides = search_overrides(spec, tp)
            setup = TrialSetup(
                experiment=spec.name, task=tp.task.name, profile=spec.profile, method=tp.method,
                seed=spec.seeds[0], epochs=tp.epochs, objective=tp.objective, space=tp.space,
                store_root=str(store.root), data_dir=data_dir,
                device=trial_device(tp, spec, overrides, args.device), cpus=tp.cpus,
                overrides=overrides, tags=tags,
                test_epochs=test_epochs(tp, searcher, opts))
            requests.append(SearchRequest(setup=setup, searcher=searcher, samples=n, param_space=space,
                                          options=opts, gpus=tp.gpus, quiet=quiet,
                                          force=bool(args.force)))
    total = len(requests)
    requests = [SearchRequest(**{**r.__dict__, "label": f"{k}/{total} {r.setup.task} {r.searcher}"})
                for k, r in enumerate(requests, 1)]
    _say(f"tuning {spec.name} ({spec.profile} profile): {total} searches, "
         f"{sum(r.samples for r in requests)} trials, objective {plan.objective} -> "
         f"{store.root / spec.name}", quiet)
    if not requests and not plan.transfer_to:
        return 0

    conn = None
    failed = 0
    watching = contextlib.ExitStack()
    try:
        t0 = time.monotonic()
        ran = 0  # searches trained in this invocation: the ETA's pace (complete ones take no time)
        for k, req in enumerate(requests, 1):
            complete = is_complete(req)
            ran += not complete
            if not complete and conn is None:
                conn = ensure_ray(args.address, quiet)
                watching.enter_context(watch(conn))
                check_resources(runnable, conn.address)
            if complete:
                _say(f"[{req.label}] already complete (--force runs it again)", quiet)
            else:
                _say(f"[{req.label}] {req.samples} trials, {req.setup.epochs} epochs each, "
                     f"{req.setup.cpus:g} CPU / {req.gpus:g} GPU per trial, searcher seed "
                     f"{req.setup.tags['searcher_seed']}", quiet)
            outcome = run_search(req)
            if outcome.interrupted:
                _say(f"[{req.label}] interrupted; run the same command again to resume "
                     f"(finished trials are kept)", quiet)
                return 130
            failed += outcome.errors
            elapsed = time.monotonic() - t0
            eta = elapsed / ran * (total - k) if ran else 0.0
            _say(f"[{req.label}] done: {describe(outcome, req.setup.objective)} | all searches "
                 f"{k}/{total}, elapsed {format_duration(elapsed)}, ETA {format_duration(eta)}", quiet)
            for trial_id, why in sorted(outcome.failed.items()):
                _say(f"[{req.label}] trial {trial_id} FAILED, retries used up ({why}); "
                     "run the same command again to restart it from its last epoch", quiet)
        if plan.transfer_to:
            from mlrsnet.paper.tune.transfer_runs import run_transfer

            if conn is None:
                conn = ensure_ray(args.address, quiet)
                watching.enter_context(watch(conn))
            failed += run_transfer(spec, plan, store, source=runnable[0] if runnable else None,
                                   address=args.address, data_dir=data_dir, device=args.device,
                                   quiet=quiet, cpus=args.cpus_per_trial, gpus=args.gpus_per_trial)
    except Exception as exc:
        if conn is not None and not isinstance(exc, UserError) and not head_alive(conn):
            raise ClusterLost(lost_message(conn.address)) from None
        raise
    finally:
        watching.close()
        if conn is not None and conn.started:
            import ray

            ray.shutdown()
    return 1 if failed else 0

