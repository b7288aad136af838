"""One search: one searcher on one task, as one Ray Tune experiment that can be resumed.

The Tune experiment lives in ``<results>/<experiment>/tune/<task>--<searcher>--<profile>--<objective>``
next to the Parquet tables.  Running the same command again restores it with
``Tuner.restore``: finished trials are kept (never re-run), unfinished ones start again
and continue from their last epoch checkpoint (the store's), and the searcher's state
(GP observations, BOHB's KDEs, the random generator) comes back with it.  A search
folder records the plan it was started with; a different budget or space is refused
rather than silently mixed into the old search (``--force`` starts a new one).

A trial whose worker dies (or that raises) is restarted by Tune up to :data:`MAX_FAILURES`
times, resuming from its epoch checkpoint; one that still fails is stored as ``failed``
and leaves the search incomplete, so running the command again restarts it.

Every search gets a ``search_id`` (folder name and start time) in its trials' tags, so
the renderers can tell a restarted search from the one it replaced.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness.store import Store
from mlrsnet.paper.tune.trial import TrialSetup

PLAN_FILE = "mlrsnet-search.json"
#: Times Tune restarts a trial whose worker died or that raised (``FailureConfig``); the
#: restarted trial resumes from its last epoch checkpoint.  A trial still failing after
#: that is stored as ``failed`` and the search stays incomplete: the next run of the same
#: command restarts it (and only it).
MAX_FAILURES = 2


@dataclass(frozen=True)
class SearchRequest:
    setup: TrialSetup
    searcher: str
    #: Trials to run (grid encoding: the number of grid points after
    #: :func:`~mlrsnet.paper.tune.spaces.grid_subset`).
    samples: int
    param_space: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    gpus: float = 0.0
    label: str = ""
    quiet: bool = False
    force: bool = False


@dataclass
class SearchOutcome:
    task: str
    searcher: str
    search_id: str
    path: Path
    trials: int = 0
    errors: int = 0
    stopped: int = 0
    #: trial_id -> why Tune gave up on it (after :data:`MAX_FAILURES` retries).
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    #: Already complete before this command: read from the store, not run.
    resumed_complete: bool = False
    wall_s: float = 0.0
    best: dict[str, Any] | None = None


def search_dir(store_root: Path, experiment: str, task: str, searcher: str, profile: str,
               objective: str) -> Path:
    return Path(store_root) / experiment / "tune" / f"{task}--{searcher}--{profile}--{objective}"


def completed_search_ids(store_root: Path, experiment: str) -> set[str]:
    """The ids of the experiment's searches recorded complete (every trial ended, none
    failed), read from their plan records; a search still running is not among them."""
    ids = set()
    for record in sorted((Path(store_root) / experiment / "tune").glob(f"*/{PLAN_FILE}")):
        try:
            saved = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if _complete(saved) and saved.get("search_id"):
            ids.add(str(saved["search_id"]))
    return ids


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (Tune's default puts the whole config in the name)."""
    return str(trial.trial_id)


def trial_name(trial: Any, offset: int = 0) -> str:
    """``<running number>_<trial id>``: searcher-made trial ids carry no number, Tune's
    experiment tag (``"3_lr=..."``) does; the trial reads it back as its ``trial`` tag.
    The basic variant generator counts from 0, searchers from 1: ``offset`` (the searcher's
    :attr:`~mlrsnet.paper.tune.searchers.Searcher.trial_offset`) makes both count from 1."""
    number = str(trial.experiment_tag).split("_", 1)[0]
    return f"{int(number) + offset}_{trial.trial_id}" if number.isdigit() else str(trial.trial_id)


def _plan_record(req: SearchRequest) -> dict[str, Any]:
    s = req.setup
    return json.loads(json.dumps({
        "task": s.task, "profile": s.profile, "method": s.method, "seed": s.seed,
        "epochs": s.epochs, "objective": s.objective.key, "searcher": req.searcher,
        "samples": req.samples, "options": dict(req.options), "space": dict(s.space),
        "overrides": dict(s.overrides),
    }, default=str))


def _new_search_id(path: Path) -> str:
    return f"{path.name}@{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _build_tuner(req: SearchRequest, path: Path, trainable: Any, restore: bool) -> Any:
    from ray import tune

    from mlrsnet.paper.tune.progress import SearchProgress
    from mlrsnet.paper.tune.searchers import build_searcher, get_searcher

    entry = get_searcher(req.searcher)
    if restore:
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                                  restart_errored=True, param_space=dict(req.param_space))
    search_alg, scheduler = build_searcher(req.searcher, max_epochs=req.setup.epochs,
                                           options=req.options)
    progress = SearchProgress(req.label or path.name, req.samples, req.setup.epochs,
                              req.setup.objective, req.setup.space, quiet=req.quiet)
    return tune.Tuner(
        trainable,
        param_space=dict(req.param_space),
        tune_config=tune.TuneConfig(
            metric="objective", mode=req.setup.objective.mode, search_alg=search_alg,
            scheduler=scheduler, num_samples=1 if entry.samples_are_grid_points else req.samples,
            reuse_actors=True, trial_dirname_creator=trial_dirname,
            trial_name_creator=partial(trial_name, offset=entry.trial_offset)),
        run_config=tune.RunConfig(name=path.name, storage_path=str(path.parent), verbose=0,
                                  callbacks=[progress],
                                  failure_config=tune.FailureConfig(max_failures=MAX_FAILURES)),
    )


def _check_plan(path: Path, saved: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    if saved["plan"] == record:
        return
    before = saved["plan"]
    changed = sorted(k for k in record if before.get(k) != record[k])
    was = ", ".join(f"{k}={before.get(k)}" for k in changed)
    raise UserError(
        f"the search in {path} was started with a different plan ({was}). "
        "Run the same command as before to resume it, or add --force to start this "
        "search again (its finished trials stay in the store).")


def redefined_since(store: Store, setup: TrialSetup, saved: Mapping[str, Any]) -> str | None:
    """Why the recorded search no longer answers for the profile it names (None if it
    does): one of its trials recorded other profile training fields than the profile has
    now (its epochs, sizes or model were redefined since), or trained with another
    execution identity than its trials would now (device, precision, threads, compile...:
    a search's trials are never mixed across them).  Trials without recorded fields are
    trusted, and trials recorded before execution identities read as the defaults they
    were trained with, as the executor reads such runs."""
    from mlrsnet.harness.executor import (
        execution_mismatch,
        expected_execution,
        profile_identity,
        profile_mismatch,
    )
    from mlrsnet.harness.experiment import Cell

    cell = Cell(task=setup.task, profile=setup.profile, method=setup.method, overrides=dict(setup.overrides))
    current = profile_identity(cell)
    execution = expected_execution(cell, setup.device, max(1, int(setup.cpus)))
    runs = store.runs(setup.experiment)
    if runs.empty or "tags" not in runs:
        return None
    mine = runs[runs["tags"].map(lambda t: isinstance(t, dict) and t.get("search_id") == saved.get("search_id"))]
    for row in mine.to_dict("records"):
        data = row.get("data")
        changed = profile_mismatch(data.get("profile") if isinstance(data, dict) else None, current)
        if changed:
            return f"profile {setup.profile} of {setup.task} has been redefined since its trials trained ({changed})"
        if row.get("status") in ("finished", "diverged", "stopped", "running", "failed"):
            why = execution_mismatch(row, execution)
            if why:
                return f"its trials were trained with other execution options ({why.split('(', 1)[1]}"
    return None


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    tmp = path / (PLAN_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path / PLAN_FILE)


def _tune_catches_sigint() -> bool:
    return (threading.current_thread() is threading.main_thread()
            and os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0"))


def request_dir(req: SearchRequest) -> Path:
    s = req.setup
    return search_dir(Path(s.store_root), s.experiment, s.task, req.searcher, s.profile, s.objective.split)


def _complete(saved: Mapping[str, Any] | None) -> bool:
    # Searches recorded complete with failed trials (before failed trials were retried)
    # are not: a rerun restarts those trials.
    return saved is not None and bool(saved.get("complete")) and not saved.get("errors")


def is_complete(req: SearchRequest) -> bool:
    """Whether the search already ran to its end with every trial ended (and is not being
    forced again); a search with failed trials is not complete."""
    plan = request_dir(req) / PLAN_FILE
    return not req.force and plan.exists() and _complete(json.loads(plan.read_text()))


def run_search(req: SearchRequest) -> SearchOutcome:
    """Run (or resume) one search to its end; returns what happened.

    A search whose trials all ended is marked complete in its folder and never handed to
    Tune again: running the command again only reads its results from the store.  A search
    with failed trials (still failing after :data:`MAX_FAILURES` retries) is not: running
    the command again restores it and restarts those trials from their epoch checkpoints."""
    import time

    s = req.setup
    path = request_dir(req)
    record = _plan_record(req)
    if req.force and path.exists():
        shutil.rmtree(path)
    saved = json.loads((path / PLAN_FILE).read_text()) if (path / PLAN_FILE).exists() else None
    if saved is not None:
        _check_plan(path, saved, record)
    store = Store(s.store_root)
    why = redefined_since(store, s, saved) if saved is not None else None
    if why:  # as the executor trains a run of a redefined profile again
        if not req.quiet:
            print(f"[{req.label or path.name}] starting this search again: {why}; the "
                  f"{saved['search_id']} trials stay in the store, outside the tables",
                  file=sys.stderr, flush=True)
        shutil.rmtree(path)
        saved = None
    started = time.monotonic()
    if _complete(saved):
        outcome = SearchOutcome(task=s.task, searcher=req.searcher, search_id=saved["search_id"],
                                path=path, resumed_complete=True)
    else:
        outcome = _fit(req, path, record, saved)
        if not outcome.interrupted:
            outcome.stopped = finalize_stopped_trials(store, s.experiment, outcome.search_id,
                                                      failed=outcome.failed)
            saved = json.loads((path / PLAN_FILE).read_text())
            _write_record(path, {**saved, "complete": outcome.errors == 0, "errors": outcome.errors,
                                 "failed": outcome.failed})
    outcome.wall_s = time.monotonic() - started
    from mlrsnet.paper.tune.results import best_trial

    outcome.best = best_trial(store.runs(s.experiment), store.read("epochs", s.experiment),
                              outcome.search_id)
    if outcome.best:
        outcome.trials = int(outcome.best["trials"])
    return outcome


def _fit(req: SearchRequest, path: Path, record: Mapping[str, Any],
         saved: Mapping[str, Any] | None) -> SearchOutcome:
    """Start or restore the Tune experiment and run it to its end (or to Ctrl-C)."""
    from ray import tune

    from mlrsnet.paper.tune.searchers import get_searcher
    from mlrsnet.paper.tune.trial import run_trial

    s = req.setup
    restore = saved is not None and tune.Tuner.can_restore(str(path))
    entry = get_searcher(req.searcher)
    if restore and not entry.restorable:
        restore = False
        if not req.quiet:
            print(f"[{req.label or path.name}] {entry.title} cannot resume an "
                  "interrupted search (ray-project/ray#39900: its restored brackets stall); starting "
                  f"it again from its first trial (the {saved['search_id']} trials stay in the store, "
                  "outside the tables)", file=sys.stderr, flush=True)
    tags = dict(s.tags)
    if restore:
        search_id = saved["search_id"]
        # the seed the search was started with (a search recorded before seeds were recorded
        # keeps the tag its trials carry: a trial's tags are part of its run id)
        tags["searcher_seed"] = saved.get("searcher_seed", _trials_seed(Path(s.store_root), s.experiment,
                                                                         search_id, tags.get("searcher_seed")))
    else:
        if path.exists():
            shutil.rmtree(path)  # a folder without Tune state: nothing to resume
        path.mkdir(parents=True)
        search_id = _new_search_id(path)
        from mlrsnet.paper.tune.searchers import max_concurrent

        _write_record(path, {"search_id": search_id, "searcher_seed": tags.get("searcher_seed"), "plan": record,
                             "max_concurrent": max_concurrent(req.searcher, req.options)})
    setup = replace(s, tags={**tags, "search_id": search_id})
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup),
                                    {"cpu": s.cpus, "gpu": req.gpus})
    before = signal.getsignal(signal.SIGINT)
    try:
        grid = _build_tuner(req, path, trainable, restore).fit()
        # Tune's Ctrl-C handler ends the run gracefully and puts the previous handler back;
        # after an uninterrupted run its own handler is still installed.
        sigint_seen = _tune_catches_sigint() and signal.getsignal(signal.SIGINT) is before
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, before)  # so a later Ctrl-C interrupts the command
    incomplete = grid.num_terminated + grid.num_errors < len(grid)
    failed = {Path(r.path).name: _error_text(r.error) for r in grid if r.error is not None}
    return SearchOutcome(task=s.task, searcher=req.searcher, search_id=search_id, path=path,
                         trials=len(grid), errors=grid.num_errors, failed=failed,
                         interrupted=sigint_seen or incomplete)


def _trials_seed(store_root: Path, experiment: str, search_id: str, default: Any) -> Any:
    """The ``searcher_seed`` tag the stored trials of ``search_id`` carry (``default`` if it
    has none stored yet)."""
    runs = Store(store_root).runs(experiment)
    if runs.empty or "tags" not in runs:
        return default
    for tags in runs["tags"]:
        if isinstance(tags, dict) and tags.get("search_id") == search_id and "searcher_seed" in tags:
            return tags["searcher_seed"]
    return default


def _error_text(error: BaseException) -> str:
    """One line: the exception's type and the first line of its message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 500 else text[:497] + "..."


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def stopped_data(data: Any, source: Any) -> Any:
    """A stopped trial's data identity: its ``running`` row's (the folders searched), with the
    source its checkpoint names and that source's files (size, mtime, sha256), as a finished
    run records them, so that it stands wherever the same bytes are found."""
    from mlrsnet.harness.executor import _fingerprint

    if not isinstance(data, dict) or not isinstance(source, str) or not source:
        return data
    files = _fingerprint(source)
    return {**data, "source": source, "files": files} if files else data


def finalize_stopped_trials(store: Store, experiment: str, search_id: str,
                            failed: Mapping[str, str] | None = None) -> int:
    """Record the trials of an ended search whose rows still say ``running``; returns how
    many the scheduler stopped.

    - A trial Tune gave up on (``failed``: trial_id -> error; its worker died, or it kept
      raising, :data:`MAX_FAILURES` times) is ``failed`` with that error; its epoch
      checkpoint is kept, so the rerun that restarts it resumes from its last epoch.
    - Any other is a trial the scheduler ended early (BOHB): Tune ends its process after an
      epoch report, so ``run_cell`` never writes its rows; the loop's epoch checkpoint holds
      them.  Its curve so far is written and its status is ``stopped``.

    Called only once the search is over, when no trial of it can still be running."""
    from mlrsnet.harness.loop import checkpoint_steps, load_epoch_checkpoint

    failed = dict(failed or {})
    runs = store.runs(experiment)
    if runs.empty:
        return 0
    mine = runs[(runs["status"] == "running")
                & runs["tags"].map(lambda t: t.get("search_id") == search_id)]
    stopped = 0
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for row in mine.to_dict("records"):
        run_id = row["run_id"]
        clean = {k: _clean(v) for k, v in row.items()}
        trial_id = (row.get("tags") or {}).get("trial_id")
        if trial_id in failed:
            store.write_run_row({
                **clean, "status": "failed", "finished": now,
                "error": (f"Tune gave up on trial {trial_id} after {MAX_FAILURES} retries: "
                          f"{failed[trial_id]} (its worker died or the trial kept failing); run "
                          "the same command again to restart it from its last epoch checkpoint"),
            })
            continue
        checkpoint = store.root / experiment / "checkpoints" / f"{run_id}.pt"
        epochs_done, note = 0, ""
        if checkpoint.exists():
            try:  # the loop's own reader: weights only, onto the CPU
                ck = load_epoch_checkpoint(checkpoint, run_id)
            except UserError:
                note = " (its epoch checkpoint was damaged: no curve kept)"
            else:
                store.write_curves(experiment, run_id, ck["epochs"], checkpoint_steps(ck))
                epochs_done = int(ck["epoch"]) + 1
                clean["data"] = stopped_data(clean.get("data"), ck.get("data_source"))
        store.write_run_row({
            **clean, "status": "stopped", "epochs_done": epochs_done, "finished": now,
            "error": f"stopped early by the scheduler after {epochs_done} epoch(s){note}",
        })
        checkpoint.unlink(missing_ok=True)
        stopped += 1
    return stopped
