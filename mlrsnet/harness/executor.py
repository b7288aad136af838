"""Executors: run an experiment's cells in-process or as Ray tasks, into the store.

Both executors call the same :func:`run_cell`, so a cell produces the same rows wherever it
runs.  A finished (or diverged) ``run_id`` is never run again unless forced; an interrupted
one resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness import execution, process_env
from mlrsnet.harness.execution import backend_flags, device_versions, pick_device
from mlrsnet.harness.experiment import Cell, resolved_profile
from mlrsnet.harness.files import HOST
from mlrsnet.harness.loop import RunResult, train
from mlrsnet.harness.store import FINAL_STATUSES, RunClaimed, RunLock, Store, stale_lock_s

VERSIONED = ("torch", "torchvision", "numpy", "ray", "pandas", "pyarrow", "bayesian-optimization",
             "hpbandster", "ConfigSpace", "hyperopt")


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    """Package versions, and the CPU and the vector instruction set torch's CPU kernels use:
    the same seed gives other floats (so, over a run, other curves) where those differ."""
    out = {"python": platform.python_version(), "cpu_model": _cpu_model()}
    try:
        import torch

        out["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError):
        pass
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        out["mlrsnet"] = metadata.version("mlrsnet")
    except metadata.PackageNotFoundError:
        pass
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _now() -> str:
    """UTC time to the microsecond: runs started within one second still sort in the order
    they started (the renderers list methods in that order)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


#: torch intra-op threads a run trains with unless told otherwise, on every executor (this
#: process, a Ray task, a Tune trial's default): the same count on both executors gives
#: bit-identical tables (float reductions are ordered by the thread count).
DEFAULT_THREADS = 1
THREADS_ENV = "MLRSNET_THREADS"


def run_threads(threads: int | None = None) -> int:
    """Intra-op threads for one run: ``threads`` if given (a Tune trial passes its CPUs),
    else ``$MLRSNET_THREADS`` (forwarded to Ray workers like every ``MLRSNET_*`` variable),
    else :data:`DEFAULT_THREADS`."""
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        try:
            threads = int(text) if text else DEFAULT_THREADS
        except ValueError:
            raise UserError(f"${THREADS_ENV} must be a whole number of threads, got {text!r}") from None
    return max(1, int(threads))


@contextlib.contextmanager
def _intra_op_threads(n: int) -> Any:
    """torch's intra-op thread count set to ``n`` for the block, the previous one put back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class DataChangedWarning(UserWarning):
    """A finished run was produced from other data than the current invocation finds."""


def data_search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The data folders this invocation searches, in order, resolved; only existing ones.

    The lookup order of the data layer (``--data-dir``, ``$MLRSNET_DATA_DIR``, ``./data``;
    first match wins), computed here because the harness does not import the paper's data
    layer."""
    candidates = [data_dir, os.environ.get("MLRSNET_DATA_DIR"), "data"]
    out: list[str] = []
    for c in candidates:
        if c is None or str(c) == "":
            continue
        p = Path(c).expanduser().resolve()
        if p.is_dir() and str(p) not in out:
            out.append(str(p))
    return out


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """The file's sha256; cached per (path, size, mtime) so a file is read once per process."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(f: Path) -> list[Any]:
    st = f.stat()
    return [st.st_size, st.st_mtime_ns, _sha256(str(f.resolve()), st.st_size, st.st_mtime_ns)]


def _fingerprint(source: Any) -> dict[str, list[Any]]:
    """path -> [size, mtime_ns, sha256] of the data file (or the files of the data folder) a
    run read.  The digest lets a run stand when the same data is found again under another
    modification time or folder (a fresh copy of ``../shared``, another machine)."""
    if not isinstance(source, str) or not source:
        return {}
    p = Path(source)
    try:
        if p.is_file():
            return {str(p.resolve()): _stamp(p)}
        if p.is_dir():
            return {str(f.resolve()): _stamp(f) for f in sorted(p.rglob("*")) if f.is_file()}
    except OSError:
        return {}
    return {}


def data_identity(data_dir: str | os.PathLike[str] | None, source: Any = None) -> dict[str, Any]:
    """What a run's ``data`` column records: the folders searched and, once trained, the
    source the workload read (``method_info["data"]``) with each file's size and mtime."""
    ident: dict[str, Any] = {"dirs": data_search_dirs(data_dir)}
    if source is not None:
        ident["source"] = str(source)
        ident["files"] = _fingerprint(source)
    return ident


def profile_identity(cell: Cell) -> dict[str, Any] | None:
    """The training fields of the profile the cell trains at (``Profile.training_fields``),
    recorded in the run's ``data`` column; None for a profile type without them, or for a
    cell whose profile cannot be resolved (the run's set-up then says why)."""
    try:
        fields = getattr(resolved_profile(cell), "training_fields", None)
    except UserError:
        return None
    return fields() if callable(fields) else None


def differing_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ, a key absent on one side reading as None there: a profile
    field added since a run was recorded, with the default None (e.g. ``vocab_size``),
    leaves that run's record as it was."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def profile_mismatch(recorded: Any, current: Mapping[str, Any] | None) -> str | None:
    """How the profile fields a run recorded differ from the profile's fields now, as
    ``key old -> new`` for the first few (None if they agree, or if either is unknown)."""
    if current is None or not isinstance(recorded, dict):
        return None
    keys = differing_fields(recorded, current)
    if not keys:
        return None
    return ", ".join(f"{k} {recorded.get(k)!r} -> {current.get(k)!r}" for k in keys[:4]) + (
        " ..." if len(keys) > 4 else "")


def data_mismatch(recorded: Any, current_dirs: Sequence[str],
                  profile: Mapping[str, Any] | None = None) -> str | None:
    """Why a run recorded with ``recorded`` data (and profile fields) is not this
    invocation's (None if it is).

    A run whose files carry content digests stands wherever the same bytes are found now:
    each file is looked up under the same relative name in this invocation's data folders
    (first match, as the data layer does) and compared by size, then by sha256 unless its
    path and modification time are unchanged.  Rows recorded before digests (``[size,
    mtime]``) need the same folders and unchanged files; ``mlrsnet-bench store restamp``
    adds digests to them once you know the data is the same.  Rows without a data
    identity are trusted, and so are rows without recorded profile fields."""
    if not isinstance(recorded, dict) or not recorded:
        return None
    changed = profile_mismatch(recorded.get("profile"), profile)
    if changed:
        return f"its profile has been redefined since it was trained ({changed})"
    dirs = recorded.get("dirs")
    files = recorded.get("files") or {}
    if files and all(len(stamp) >= 3 for stamp in files.values()):
        for path, stamp in files.items():
            why = _content_mismatch(path, stamp, list(dirs or []), current_dirs)
            if why:
                return why
        return None
    if dirs is not None and list(dirs) != list(current_dirs):
        return (f"it was trained with data from {', '.join(dirs) or '(no folder)'} and this run "
                f"looks in {', '.join(current_dirs) or '(no folder)'}")
    for path, stamp in files.items():
        try:
            st = os.stat(path)
        except OSError:
            return f"its data file {path} is gone"
        if [st.st_size, st.st_mtime_ns] != list(stamp)[:2]:
            return f"its data file {path} changed since (size or modification time)"
    return None


def counterpart(path: str, recorded_dirs: Sequence[str], current_dirs: Sequence[str]) -> Path | None:
    """Where this invocation finds the data file a run read at ``path``: the same name
    relative to the recorded data folder, in the first current folder that has it; the
    path itself if it lay in none of the recorded folders."""
    rel = next((Path(path).relative_to(d) for d in recorded_dirs if Path(path).is_relative_to(d)), None)
    if rel is None:
        return Path(path) if Path(path).is_file() else None
    return next((Path(d) / rel for d in current_dirs if (Path(d) / rel).is_file()), None)


def _content_mismatch(path: str, stamp: Sequence[Any], recorded_dirs: Sequence[str],
                      current_dirs: Sequence[str]) -> str | None:
    size, mtime_ns, digest = stamp[0], stamp[1], stamp[2]
    now = counterpart(path, recorded_dirs, current_dirs)
    if now is None:
        return (f"its data file {path} is not found in {', '.join(current_dirs) or '(no folder)'}")
    try:
        st = now.stat()
        if st.st_size != size:
            return f"its data file {path} has another size at {now}"
        if str(now.resolve()) == path and st.st_mtime_ns == mtime_ns:
            return None
        if _sha256(str(now.resolve()), st.st_size, st.st_mtime_ns) != digest:
            return f"its data file {path} has other contents at {now} (sha256 differs)"
    except OSError as exc:
        return f"its data file {now} cannot be read ({exc.strerror})"
    return None


class _Segment:
    """Writes the ``running`` row's heartbeat (and time so far) at each epoch end."""

    def __init__(self, store: Store, row: dict[str, Any], wall_before: float, own_row: bool,
                 on_epoch: Any, lock_path: Path) -> None:
        self.store, self.row, self.wall_before, self.own_row = store, row, wall_before, own_row
        self.on_epoch, self.lock_path = on_epoch, lock_path
        self.t0 = time.perf_counter()
        self.warned = False

    def wall(self) -> float:
        return self.wall_before + (time.perf_counter() - self.t0)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.lock_path)  # the lock's mtime is the claim's heartbeat too
        if self.own_row:
            try:
                self.store.write_run_row({**self.row, "heartbeat": _now(), "epochs_done": epoch,
                                          "wall_time_s": self.wall()})
            except OSError as exc:  # the final write reports it; training goes on
                if not self.warned:
                    warnings.warn(f"run {self.row['run_id']}: could not write its heartbeat: {exc}",
                                  stacklevel=2)
                    self.warned = True
        if self.on_epoch is not None:
            self.on_epoch(epoch, metrics)


def run_cell(cell: Cell, store: Store, *, data_dir: str | None = None, device: str | None = None,
             quiet: bool = True, force: bool = False, artifact_dir: str | Path | None = None,
             on_epoch: Any = None, threads: int | None = None,
             test_epochs: Sequence[int] | None = None) -> RunResult | None:
    """Run one cell into the store; ``None`` if it was already done (and not forced).

    The run trains with :func:`run_threads` (``threads``) torch intra-op threads, whichever
    executor calls it, and records the count in ``method_info["threads"]``.  Its device and
    execution options (:mod:`mlrsnet.harness.execution`) are its *execution identity*,
    recorded in ``data["execution"]``: a finished run trained with another identity (other
    device, precision, threads, compile, ...) does not count as done, as for other data.
    ``test_epochs`` is handed to :func:`~mlrsnet.harness.loop.train`.

    The run is claimed first (:class:`~mlrsnet.harness.store.RunLock`); a run another live
    process holds raises :class:`~mlrsnet.harness.store.RunClaimed`.  A finished run counts
    as done only if its files are readable and it was trained on the data this invocation
    finds (see :func:`data_mismatch`); otherwise it is trained again, with a warning.
    ``--force`` keeps the old result readable until the new one is written."""
    run_id = cell.run_id
    dirs = data_search_dirs(data_dir)
    n = run_threads(threads)
    dev = cell_device(cell, device)
    current = execution_identity(cell, dev.type, n)
    if not force and _done(cell, store, dirs, warn=False, execution=current):
        return None  # cheap path: no lock needed to skip a finished run
    with store.lock(cell.experiment, run_id).holding(run_id):  # renews its heartbeat meanwhile
        prior = store.run_row(cell.experiment, run_id)  # a damaged row warns here, once
        if not force and prior is not None and _done(cell, store, dirs, warn=True, row=prior, execution=current):
            return None  # finished by another process meanwhile
        with _intra_op_threads(n), backend_flags(current):
            return _train_claimed(cell, store, prior, dirs, data_dir=data_dir, device=dev, quiet=quiet,
                                  force=force, artifact_dir=artifact_dir, on_epoch=on_epoch, threads=n,
                                  execution=current, test_epochs=test_epochs)


def cell_device(cell: Cell, device: str | None) -> Any:
    """The device ``cell`` trains on (:func:`~mlrsnet.harness.execution.pick_device`): a
    profile sized for GPUs (``expects_gpu``) never falls back to the CPU unless asked."""
    try:
        expects = bool(getattr(resolved_profile(cell), "expects_gpu", False))
    except UserError:
        expects = False  # the run's set-up says why the profile cannot be resolved
    return pick_device(device, expects_gpu=expects, what=f"{cell.task} at profile {cell.profile}")


def _kind(cell: Cell) -> str | None:
    from mlrsnet.harness.registry import get_task

    try:
        return get_task(cell.task).kind
    except UserError:
        return None


def execution_identity(cell: Cell, device_type: str, threads: int | None = None) -> dict[str, Any]:
    """The execution identity ``cell`` trains with on ``device_type`` with ``threads``
    (default :func:`run_threads`) and this process's options."""
    return execution.identity(device_type, _kind(cell), run_threads(threads))


def expected_execution(cell: Cell, device: str | None = None, threads: int | None = None,
                       gpus: float | None = None) -> dict[str, Any]:
    """The execution identity an invocation will train ``cell`` with, without refusing:
    ``device`` if given; else, on Ray (``gpus`` per cell given), CUDA when the cell asks for
    GPUs and the CPU when not (Ray hides the GPUs of a task that asked for none); else this
    machine's ``auto``."""
    import torch

    if device not in (None, "", "auto"):
        try:
            kind = torch.device(str(device)).type
        except RuntimeError:
            kind = "cpu"
    elif gpus is not None:
        kind = "cuda" if gpus > 0 else "cpu"
    else:
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return execution_identity(cell, kind, threads)


def _done(cell: Cell, store: Store, dirs: Sequence[str], *, warn: bool,
          row: dict[str, Any] | None = None, execution: Mapping[str, Any] | None = None) -> bool:
    """Whether the cell's stored run stands: a final status, readable curves, same data,
    and (when ``execution`` is given) the same execution identity."""
    with warnings.catch_warnings():
        if not warn:
            warnings.simplefilter("ignore")
        if row is None:
            row = store.run_row(cell.experiment, cell.run_id)
        if row is None or row.get("status") not in FINAL_STATUSES:
            return False
        if [p for p in store.damaged(cell.experiment, cell.run_id) if p.parent.name != "runs"]:
            return False
        why = data_mismatch(row.get("data"), dirs, profile_identity(cell)) or execution_mismatch(row, execution)
    if why:
        if warn:
            warnings.warn(f"run {cell.run_id} ({cell.task} {cell.method} seed={cell.seed}) is "
                          f"{row.get('status')} but {why}: training it again", DataChangedWarning,
                          stacklevel=3)
        return False
    return True


def execution_mismatch(row: Mapping[str, Any], current: Mapping[str, Any] | None) -> str | None:
    """Why a stored run's execution identity is not ``current`` (None if it is, or if
    ``current`` is not given): see :func:`mlrsnet.harness.execution.recorded_identity`."""
    if current is None:
        return None
    changed = execution.mismatch(execution.recorded_identity(row), current)
    return f"it was trained with other execution options ({changed})" if changed else None


def stands(cell: Cell, store: Store, data_dir: str | None = None, *, device: str | None = None,
           threads: int | None = None, gpus: float | None = None) -> bool:
    """Whether the cell's stored run stands as it is for this invocation (what the executor
    skips): ended, readable, on the same data, the profile as defined now and the same
    execution identity (:func:`expected_execution` of ``device``, ``threads``, ``gpus``)."""
    return _done(cell, store, data_search_dirs(data_dir), warn=False,
                 execution=expected_execution(cell, device, threads, gpus))


def row_stands(row: Mapping[str, Any], dirs: Sequence[str], *, device: str | None = None,
               trial: bool = False) -> bool:
    """Whether a stored ``runs`` row's data, profile fields and execution identity are this
    invocation's (its status aside): the check :func:`stands` makes, from the row alone, for
    a run of the reproduction (through Ray, with its profile's GPUs per cell; a search trial
    (``trial``) with as many threads as CPUs per trial)."""
    try:
        cell = Cell(task=str(row["task"]), profile=str(row["profile"]), method=str(row["method"]),
                    overrides=dict(row.get("overrides") or {}))
    except (KeyError, TypeError, ValueError):
        return True
    if data_mismatch(row.get("data"), dirs, profile_identity(cell)) is not None:
        return False
    try:
        prof = resolved_profile(cell)
    except UserError:
        return True
    threads = max(1, int(prof.cpus_per_trial)) if trial else None
    return execution_mismatch(row, expected_execution(cell, device, threads, prof.gpus_per_trial)) is None


def _train_claimed(cell: Cell, store: Store, prior: dict[str, Any] | None, dirs: Sequence[str], *,
                   data_dir: str | None, device: Any, quiet: bool, force: bool,
                   artifact_dir: str | Path | None, on_epoch: Any, threads: int,
                   execution: Mapping[str, Any], test_epochs: Sequence[int] | None) -> RunResult:
    run_id = cell.run_id
    dev = device
    exp_dir = store.root / cell.experiment
    checkpoint = exp_dir / "checkpoints" / f"{run_id}.pt"
    # We hold the run's lock: a checkpoint temp file of this run is a dead writer's.
    checkpoint.with_suffix(".pt.tmp").unlink(missing_ok=True)
    prior_final = prior is not None and prior.get("status") in FINAL_STATUSES
    prior_data = (prior or {}).get("data") if isinstance((prior or {}).get("data"), dict) else {}
    prior_dirs = prior_data.get("dirs")
    profile = profile_identity(cell)
    prior_profile = prior_data.get("profile")
    if (force or prior_final or (prior_dirs is not None and list(prior_dirs) != list(dirs))
            or (isinstance(prior_profile, dict) and prior_profile != profile)
            or (prior is not None and execution_mismatch(prior, execution))):
        checkpoint.unlink(missing_ok=True)  # a fresh start: nothing to resume from
    resuming = checkpoint.exists() and prior is not None and not prior_final
    started = str(prior["started"]) if resuming and prior.get("started") else _now()
    wall_before = float(prior.get("wall_time_s") or 0.0) if resuming else 0.0
    if wall_before != wall_before:  # NaN
        wall_before = 0.0
    artifacts = Path(artifact_dir) if artifact_dir else exp_dir / "artifacts" / run_id
    row: dict[str, Any] = {
        "run_id": run_id, "experiment": cell.experiment, "task": cell.task, "profile": cell.profile,
        "method": cell.method, "hparams": dict(cell.hparams), "seed": cell.seed,
        "tags": {**dict(cell.tags), **({"label": cell.label} if cell.label else {})},
        "overrides": dict(cell.overrides), "status": "running", "started": started,
        "git_commit": git_commit(), "versions": {**package_versions(), **device_versions(dev)},
        "device": str(dev), "host": HOST, "pid": os.getpid(), "heartbeat": _now(),
        "data": {**data_identity(data_dir), "profile": profile, "execution": dict(execution)},
    }
    # A forced re-run of a finished run leaves the old row (and curves) readable until the
    # new curves are written; otherwise the row says "running" from the start.
    own_row = not prior_final
    if own_row:
        store.write_run_row(row)
    segment = _Segment(store, row, wall_before, own_row, on_epoch, store.lock(cell.experiment, run_id).path)

    def fail(error: str) -> None:
        try:
            store.write_run_row({**row, "status": "failed", "error": error, "finished": _now(),
                                 "heartbeat": _now(), "wall_time_s": segment.wall()})
        except Exception as exc:  # the original error is what gets raised
            warnings.warn(f"run {run_id}: could not record its failure ({error}): {exc}; its row "
                          f"may still say 'running' (host {HOST}, pid {os.getpid()}, now dead)",
                          stacklevel=3)

    try:
        result = train(cell, data_dir=data_dir, device=dev, quiet=quiet, checkpoint_path=checkpoint,
                       artifact_dir=artifacts, on_epoch=segment, test_epochs=test_epochs)
    except UserError as exc:
        if own_row:
            fail(str(exc))
        raise
    except Exception as exc:  # a crash ends this run, not the experiment
        if own_row:
            fail(f"{type(exc).__name__}: {exc}")
        raise
    except BaseException as exc:  # Ctrl-C, a stopped Tune trial: the row stays "running" (resumable)
        if own_row:
            with contextlib.suppress(Exception):
                store.write_run_row({**row, "heartbeat": _now(), "wall_time_s": segment.wall(),
                                     "error": f"interrupted ({type(exc).__name__})"})
        raise
    epochs_done = max((r["epoch"] for r in result.epochs), default=0)
    final = {**row, "status": result.status, "diverged_step": result.diverged_step,
             "error": diverged_error(result),
             "finished": _now(), "heartbeat": _now(), "wall_time_s": wall_before + result.wall_time_s,
             "method_info": {**result.method_info, "threads": threads}, "epochs_done": epochs_done,
             "data": {**data_identity(data_dir, result.method_info.get("data")), "profile": profile,
                      "execution": dict(execution)}}
    try:
        if not own_row:
            store.write_run_row(row)  # the old curves are about to be replaced
        store.write_curves(cell.experiment, run_id, result.epochs, result.steps)
        store.write_run_row(final)
    except Exception as exc:
        fail(f"could not write the results: {type(exc).__name__}: {exc}")
        raise
    checkpoint.unlink(missing_ok=True)
    return result


def diverged_error(result: RunResult) -> str | None:
    """The ``error`` of a diverged run's row: the step, its epoch (from 1) and the reason;
    None for a finished run."""
    if result.status != "diverged":
        return None
    step = result.diverged_step
    epochs = [e for s, e in zip(result.steps["step"], result.steps["epoch"], strict=True) if s == step]
    where = f"step {step}" + (f" (epoch {epochs[-1]})" if epochs else "")
    return f"diverged at {where}: {result.diverged_reason or 'a value was not finite'}"


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _print(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


#: Seconds between two looks at the locks of runs another process holds.
CLAIM_POLL_S = 2.0


def wait_for_claims(store: Store, cells: Sequence[Cell]) -> None:
    """Block until the lock of at least one of ``cells`` can be taken: released by the
    process that held it (which finished or stopped its run), or stale (a dead owner on
    this host, a lock of another host without a heartbeat for :func:`~mlrsnet.harness.
    store.stale_lock_s`).  Ctrl-C ends the wait (nothing of this command is in progress)."""
    locks = [store.lock(c.experiment, c.run_id) for c in cells]
    while not any(lock.claimable() for lock in locks):
        time.sleep(CLAIM_POLL_S)


def _claimed_line(tag: str, exc: RunClaimed) -> str:
    described = RunLock(exc.path).describe(exc.owner)
    other_host = exc.owner.get("host") not in (HOST, None)
    until = (f"until it ends, or until its heartbeat is {stale_lock_s():.0f} s old (then it is taken for "
             "gone and broken)" if other_host else "until it ends")
    return f"{tag}: claimed by {described}; waiting for it {until}, after the other runs"


def run_local(cells: Sequence[Cell], store: Store, *, data_dir: str | None = None,
              device: str | None = None, quiet: bool = False, force: bool = False,
              keep_going: bool = True) -> dict[str, str]:
    """Run cells one after another in this process; returns run_id -> outcome.

    A run another process holds (:class:`~mlrsnet.harness.store.RunClaimed`) is waited for
    once the others are done (:func:`wait_for_claims`) and then run (or skipped, when its
    owner finished it): the command never ends with a wanted run left unfinished."""
    outcomes: dict[str, str] = {}
    pending = list(enumerate(cells, 1))
    said: set[str] = set()
    while pending:
        waiting = []
        for k, cell in pending:
            tag = f"[{k}/{len(cells)}] {cell.task} {cell.profile} {cell.method} seed={cell.seed}"
            try:
                result = run_cell(cell, store, data_dir=data_dir, device=device, quiet=quiet, force=force)
            except RunClaimed as exc:
                waiting.append((k, cell))
                if cell.run_id not in said:
                    said.add(cell.run_id)
                    _print(_claimed_line(tag, exc), quiet)
                continue
            except UserError:
                raise
            except Exception as exc:
                outcomes[cell.run_id] = "failed"
                # a failure is said even under --quiet (one line): exit code 1 alone names nothing
                _print(f"{tag}: FAILED ({one_line(exc)})", False)
                if not keep_going:
                    raise
                continue
            if result is None:
                outcomes[cell.run_id] = "skipped"
                _print(f"{tag}: already done, skipped", quiet)
            else:
                outcomes[cell.run_id] = result.status
                _print(f"{tag}: {_summary(result)}", quiet)
        if waiting:
            wait_for_claims(store, [cell for _, cell in waiting])
        pending = waiting
    return {c.run_id: outcomes[c.run_id] for c in cells if c.run_id in outcomes}


def _summary(result: RunResult) -> str:
    parts = [result.status, f"{result.wall_time_s:.1f}s"]
    for split, metric in (("test", "acc"), ("test", "ppl")):
        v = result.final(split, metric)
        if v is not None:
            parts.append(f"{split} {metric} {v * 100:.2f}%" if metric == "acc" else f"{split} {metric} {v:.1f}")
    return ", ".join(parts)


def run_ray(cells: Sequence[Cell], store: Store, *, address: str | None = None,
            data_dir: str | None = None, device: str | None = None, quiet: bool = False,
            force: bool = False, cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0,
            progress: Callable[[Cell, str], None] | None = None) -> dict[str, str]:
    """Run each cell as a Ray task (local Ray instance, or the cluster at ``address``).

    ``progress(cell, outcome)``, if given, is called as each pending cell ends (e.g. the
    reproduction's runs-done line).

    Connecting goes through :func:`mlrsnet.harness.cluster.connect` (an unreachable address
    or a refused token fails fast with one paragraph; one line names the cluster) and the
    head is watched while the tasks run (:func:`~mlrsnet.harness.cluster.watch`: exit code
    3 when it goes away; running the command again resumes)."""
    import ray

    from mlrsnet.harness.cluster import ClusterLost, connect, head_alive, lost_message, watch

    dirs = data_search_dirs(data_dir)
    device = ray_device(cells, device, gpus_per_cell)
    # warn here, in the driver: a Ray worker's warning would not reach the command's output
    pending = [c for c in cells if force or not _done(c, store, dirs, warn=True,
                                                      execution=expected_execution(c, device))]
    outcomes = {c.run_id: "skipped" for c in cells if c not in pending}
    if not pending:
        return outcomes
    root = str(store.root.resolve())
    data = str(Path(data_dir).resolve()) if data_dir else None
    conn = connect(address, quiet=quiet, env=process_env.forwarded_env())
    try:
        have = dict(conn.resources) or {k: float(v) for k, v in ray.cluster_resources().items()}
        if gpus_per_cell > have.get("GPU", 0.0):  # Ray would wait for ever
            raise UserError(
                f"each run asks Ray for {gpus_per_cell:g} GPU(s) but the Ray "
                f"{'cluster' if address else 'instance'} has {have.get('GPU', 0.0):g}; pass "
                "--gpus-per-cell 0 --device cpu (and a smaller --profile), or --address of a GPU cluster")
        with watch(conn):
            return _run_remote(ray, pending, cells, outcomes, root=root, data=data, device=device,
                               quiet=quiet, force=force, cpus_per_cell=cpus_per_cell,
                               gpus_per_cell=gpus_per_cell, progress=progress)
    except Exception as exc:
        if isinstance(exc, UserError) or head_alive(conn):
            raise
        raise ClusterLost(lost_message(conn.address)) from None
    finally:
        if conn.started:
            ray.shutdown()


def ray_device(cells: Sequence[Cell], device: str | None, gpus_per_cell: float) -> str:
    """The device a Ray task trains its cell on: ``device`` if given; else ``cuda`` when
    the task asks Ray for GPUs (Ray then hands it its own share: ``CUDA_VISIBLE_DEVICES``)
    and ``cpu`` when it asks for none (never an unaccounted ``cuda:0``).  A cell whose
    profile is sized for GPUs is refused rather than sent to the CPU without ``--device cpu``."""
    if device not in (None, "", "auto"):
        return str(device)
    if gpus_per_cell > 0:
        return "cuda"
    for cell in cells:
        try:
            expects = bool(getattr(resolved_profile(cell), "expects_gpu", False))
        except UserError:
            continue
        if expects:
            raise UserError(
                f"{cell.task} at profile {cell.profile} is sized for GPUs, but each Ray task asks "
                "for no GPU (--gpus-per-cell 0 / --gpus-per-trial 0), so it would train on a CPU: "
                "give it GPUs (e.g. --gpus-per-cell 1, or 0.25 to share one among four), or pass "
                "--device cpu to train on the CPU on purpose")
    return "cpu"


def _run_remote(ray: Any, pending: Sequence[Cell], cells: Sequence[Cell], outcomes: dict[str, str], *,
                root: str, data: str | None, device: str | None, quiet: bool, force: bool,
                cpus_per_cell: float, gpus_per_cell: float,
                progress: Callable[[Cell, str], None] | None = None) -> dict[str, str]:

    # one CPU share and one GPU share per cell: Ray places at most as many cells on a GPU as
    # its shares allow and hands each its device
    @ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell)
    def remote(cell_json: str) -> str | RunClaimed:
        cell = Cell(**json.loads(cell_json))
        try:
            res = run_cell(cell, Store(root), data_dir=data, device=device, quiet=True, force=force)
        except RunClaimed as exc:
            return exc  # the driver waits for it (as run_local does) and submits the cell again
        return "skipped" if res is None else res.status

    said: set[str] = set()
    while pending:
        refs = {remote.remote(json.dumps(_cell_dict(c))): c for c in pending}
        remaining, claimed = list(refs), []
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            cell = refs[done[0]]
            try:
                outcome = ray.get(done[0])
            except Exception as exc:  # a failed cell is recorded by run_cell itself
                outcomes[cell.run_id] = "failed"
                _print(f"{cell.task} {cell.method} seed={cell.seed}: FAILED ({one_line(exc)})", False)
            else:
                if isinstance(outcome, RunClaimed):
                    claimed.append(cell)
                    if cell.run_id not in said:
                        said.add(cell.run_id)
                        _print(_claimed_line(f"{cell.task} {cell.method} seed={cell.seed}", outcome), quiet)
                    continue
                outcomes[cell.run_id] = outcome
                _print(f"[{len(outcomes)}/{len(cells)}] {cell.task} {cell.method} seed={cell.seed}: "
                       f"{outcomes[cell.run_id]}", quiet)
            if progress is not None:
                progress(cell, outcomes[cell.run_id])
        if claimed:
            wait_for_claims(Store(root), claimed)
        pending = claimed
    return outcomes


def _cell_dict(cell: Cell) -> dict[str, Any]:
    return {"task": cell.task, "profile": cell.profile, "method": cell.method,
            "hparams": dict(cell.hparams), "seed": cell.seed, "experiment": cell.experiment,
            "overrides": dict(cell.overrides), "tags": dict(cell.tags), "label": cell.label}


