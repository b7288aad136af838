"""Parquet results: the ``runs``, ``epochs`` and ``steps`` tables, one file per run.

Layout: ``<root>/<experiment>/<table>/<run_id>.parquet``.  One file per run makes every
write atomic (temp file + fsync + rename) and lets several Ray workers write without a
lock; the tables are read back as the union of their files.  A run's ``runs`` row is
written last, so a ``finished`` row implies its curves are on disk.

A file that cannot be read (truncated, empty, not Parquet) is never trusted: reading skips
it with a :class:`DamagedFileWarning` naming the path, and a run with a damaged file is not
done (the executor trains it again and rewrites all its tables).

Files are written by :func:`mlrsnet.harness.files.atomic_write` (the process umask,
owner-named temporary files, stale ones of dead writers removed on the next write).

:class:`RunLock` claims a run before it is trained (``<experiment>/locks/<run_id>.lock``,
created with ``O_CREAT | O_EXCL``), so two processes on one results folder never train the
same run; a lock whose owner died on this host is broken.  Its holder renews a heartbeat in
it while it holds it (every :func:`heartbeat_interval_s`); a lock of another host, whose
owner this host cannot ask, is broken once its heartbeat is older than :func:`stale_lock_s`
(:data:`STALE_LOCK_S`, 10 minutes; ``$MLRSNET_STALE_LOCK_S``): a store copied from another
machine, a node lost in a multi-node Ray run.

Every table is written with one fixed pyarrow schema (:data:`SCHEMAS`: a column is never
typed by its first value, so ``pandas.read_parquet(<experiment>/<table>)`` and
``pyarrow.dataset`` open any folder of them), carrying :data:`SCHEMA_VERSION` in its
metadata.  One epoch convention holds in every table: ``epoch`` counts from 1 (``steps.epoch``
= the epoch a step was taken in, ``epochs.epoch`` = the epoch whose end the metrics were
measured at), so ``steps`` and ``epochs`` join on ``(run_id, epoch)``.  Files written before
version 2 (runs typed by their values, ``steps.epoch`` from 0) are read as version 2 and
rewritten in place by ``mlrsnet-bench store migrate`` (:mod:`mlrsnet.harness.migrate`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlrsnet.harness.files import HOST, atomic_write, create_file, owner_alive, pid_start

TABLES = ("runs", "epochs", "steps")
#: The resolved experiment spec stored beside the tables (:meth:`Store.write_spec`).
SPEC_FILE = "spec.json"
#: Statuses after which a run is never started again (unless forced).
FINAL_STATUSES = ("finished", "diverged")
#: A finished run that a figure no longer draws: the configuration its cell stands for was
#: found again (its search re-run) and trained under another run id.  Kept, not deleted.
SUPERSEDED = "superseded"

#: Version of the tables' layout, in each file's schema metadata (``mlrsnet.schema``).
#: 1 (no metadata): ``runs`` typed by its values, ``steps.epoch`` counted from 0.
#: 2: the fixed schemas below, ``epoch`` counted from 1 in every table.
SCHEMA_VERSION = 2
_META = {b"mlrsnet.schema": str(SCHEMA_VERSION).encode()}
_EPOCH_DOC = {b"description": b"epoch counted from 1 (the same in the steps and epochs tables)"}

RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("experiment", pa.string()), ("task", pa.string()),
    ("profile", pa.string()), ("method", pa.string()), ("hparams", pa.string()),  # JSON
    ("seed", pa.int64()), ("tags", pa.string()), ("overrides", pa.string()),  # JSON
    ("status", pa.string()), ("error", pa.string()), ("diverged_step", pa.int64()),
    ("started", pa.string()), ("finished", pa.string()), ("wall_time_s", pa.float64()),
    ("git_commit", pa.string()), ("versions", pa.string()), ("device", pa.string()),
    ("method_info", pa.string()), ("epochs_done", pa.int64()),
    # who runs it (a ``running`` row whose owner is dead is stale) and the data it used
    ("host", pa.string()), ("pid", pa.int64()), ("heartbeat", pa.string()), ("data", pa.string()),
], metadata=_META)
RUNS_COLUMNS = tuple(RUNS_SCHEMA.names)
JSON_COLUMNS = ("hparams", "tags", "overrides", "versions", "method_info", "data")
EPOCHS_SCHEMA = pa.schema([
    ("run_id", pa.string()), pa.field("epoch", pa.int32(), metadata=_EPOCH_DOC), ("split", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()),
], metadata=_META)
STEPS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("step", pa.int64()), pa.field("epoch", pa.int32(), metadata=_EPOCH_DOC),
    ("lr", pa.float64()), ("loss", pa.float64()),
], metadata=_META)
SCHEMAS = {"runs": RUNS_SCHEMA, "epochs": EPOCHS_SCHEMA, "steps": STEPS_SCHEMA}
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+=-]*$")


#: A lock of another host is stale once its heartbeat is older than this (seconds).  Its
#: holder renews the heartbeat every :func:`heartbeat_interval_s` while it holds it (a
#: thread, so a long epoch or set-up is no gap), so only a lock nobody renews ages.
STALE_LOCK_S = 600.0
#: The most seconds between two heartbeats of a held lock.
LOCK_HEARTBEAT_S = 30.0
STALE_LOCK_ENV = "MLRSNET_STALE_LOCK_S"


def stale_lock_s() -> float:
    """:data:`STALE_LOCK_S`, or ``$MLRSNET_STALE_LOCK_S`` (seconds) when set."""
    text = os.environ.get(STALE_LOCK_ENV, "").strip()
    try:
        value = float(text) if text else STALE_LOCK_S
    except ValueError:
        raise ValueError(f"${STALE_LOCK_ENV} must be a number of seconds, got {text!r}") from None
    return value if value > 0 else STALE_LOCK_S


def heartbeat_interval_s() -> float:
    """Seconds between heartbeats: :data:`LOCK_HEARTBEAT_S`, or a quarter of the stale
    threshold when that is shorter (four beats may be missed before a lock is stale)."""
    return min(LOCK_HEARTBEAT_S, stale_lock_s() / 4)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class StaleLockWarning(UserWarning):
    """A lock of another host was broken: its heartbeat had stopped."""


class DamagedFileWarning(UserWarning):
    """A results file that cannot be read; it is skipped and its run is trained again."""


def check_component(value: str, what: str = "experiment name") -> str | None:
    """Why ``value`` is not a single safe path component (None if it is)."""
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string"
    if value in (".", "..") or not _SAFE_COMPONENT.match(value) or Path(value).name != value:
        return (f"{what} {value!r} must be a single folder name (letters, digits, and _ . @ + = -, "
                f"not starting with '.' or '-'; no '/' or '..')")
    return None


def _atomic_write(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda fh: pq.write_table(table, fh))


def schema_version(table: pa.Table | pa.Schema) -> int:
    """The layout version a file was written with (1: before versions were recorded)."""
    meta = (table if isinstance(table, pa.Schema) else table.schema).metadata or {}
    try:
        return int(meta.get(b"mlrsnet.schema", b"1"))
    except ValueError:
        return 1


def _cell(value: Any, kind: pa.DataType) -> Any:
    """``value`` as a Python value of the column type ``kind``: None for a missing one (None,
    NaN, pandas' NA), whole numbers that came back as floats (a pandas column with gaps) as
    ints, anything else as the type asks."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA or value is pd.NaT:
        return None
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_floating(kind):
        return float(value)
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else str(value)
    return value


def conform(table: pa.Table, name: str) -> pa.Table:
    """A table of ``name`` read from any version's file, in the current schema: columns in
    the schema's order and types (a missing column as nulls, unknown ones dropped), and a
    version-1 ``steps.epoch`` counted from 1.  A current file comes back as it is."""
    schema = SCHEMAS[name]
    if table.schema.equals(schema, check_metadata=True):
        return table
    legacy = schema_version(table) < 2
    columns = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if not col.type.equals(field.type):
                col = col.cast(field.type) if not pa.types.is_null(col.type) else pa.nulls(len(col), field.type)
        else:
            col = pa.nulls(table.num_rows, field.type)
        if name == "steps" and field.name == "epoch" and legacy:
            import pyarrow.compute as pc

            col = pc.add(col, pa.scalar(1, field.type))
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def _jsonable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _damaged(path: Path, exc: BaseException) -> None:
    warnings.warn(f"damaged results file {path} ({type(exc).__name__}: {exc}); skipped, and its run "
                  f"is not trusted (re-running it rewrites the file)", DamagedFileWarning, stacklevel=3)


def _read_table(path: Path, columns: Sequence[str] | None = None, *, name: str | None = None) -> pa.Table | None:
    """The file's table, or None (with a warning naming it) when it cannot be read; with the
    table's ``name``, in the current schema (:func:`conform`)."""
    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
        if name is not None:
            table = conform(table, name)
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError, ValueError) as exc:
        _damaged(path, exc)
        return None
    return table


class Store:
    """Append-only Parquet tables under one results folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, experiment: str, table: str, run_id: str) -> Path:
        for value, what in ((experiment, "experiment name"), (run_id, "run id")):
            problem = check_component(value, what)
            if problem:
                raise ValueError(problem)
        return self.root / experiment / table / f"{run_id}.parquet"

    # -- writing ---------------------------------------------------------------------------
    def write_run_row(self, row: Mapping[str, Any]) -> None:
        full = {col: row.get(col) for col in RUNS_COLUMNS}
        for key in JSON_COLUMNS:
            full[key] = _jsonable(full[key] if full[key] is not None else {})
        full = {f.name: _cell(full[f.name], f.type) for f in RUNS_SCHEMA}
        _atomic_write(pa.Table.from_pylist([full], schema=RUNS_SCHEMA),
                      self.path(row["experiment"], "runs", row["run_id"]))

    def write_curves(self, experiment: str, run_id: str, epochs: Sequence[Mapping[str, Any]],
                     steps: Mapping[str, Sequence[Any]]) -> None:
        """``epochs``: rows (epoch, split, metric, value); ``steps``: columns step, epoch, lr,
        loss; ``epoch`` counted from 1 in both (:data:`SCHEMA_VERSION`)."""
        ep = pa.Table.from_pylist([{**r, "run_id": run_id} for r in epochs], schema=EPOCHS_SCHEMA)
        n = len(steps.get("step", ()))
        st = pa.table({"run_id": [run_id] * n, **{k: list(steps[k]) for k in ("step", "epoch", "lr", "loss")}},
                      schema=STEPS_SCHEMA)
        _atomic_write(ep, self.path(experiment, "epochs", run_id))
        _atomic_write(st, self.path(experiment, "steps", run_id))

    def copy_run(self, source: str, experiment: str, run_id: str, **changes: Any) -> None:
        """Record a finished run of experiment ``source`` under ``experiment`` as well (the
        same cell in two experiments, e.g. a transferred MLR-SNet both in Fig. 2 and Fig. 5):
        its curves as they are, its ``runs`` row with ``experiment`` and ``changes`` applied
        and ``data["copied_from"]`` naming the source.  The runs row is written last, so an
        interrupted copy is not taken for a finished run."""
        row = self.run_row(source, run_id)
        if row is None or row.get("status") not in FINAL_STATUSES:
            raise ValueError(f"run {run_id} of {source!r} is not a finished run")
        for table in ("epochs", "steps"):
            data = _read_table(self.path(source, table, run_id), name=table)
            if data is not None:
                _atomic_write(data, self.path(experiment, table, run_id))
        self.write_run_row({**row, **changes, "experiment": experiment,
                            "data": {**dict(row.get("data") or {}), "copied_from": source}})

    def write_spec(self, experiment: str, record: Mapping[str, Any]) -> Path:
        """Store an experiment's resolved spec beside its tables (``<experiment>/spec.json``,
        :func:`~mlrsnet.harness.experiment.spec_record` plus what the caller adds), so a
        report draws it from the store alone.  Rewritten only when it changed."""
        problem = check_component(experiment)
        if problem:
            raise ValueError(problem)
        path = self.root / experiment / SPEC_FILE
        text = json.dumps(record, sort_keys=True, indent=1, default=str) + "\n"
        if path.exists() and path.read_text(encoding="utf-8") == text:
            return path
        atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
        return path

    def spec(self, experiment: str) -> dict[str, Any] | None:
        """The stored spec of ``experiment`` (None when none was stored or it is damaged)."""
        path = self.root / experiment / SPEC_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            _damaged(path, exc)
            return None
        return data if isinstance(data, dict) else None

    # -- reading ---------------------------------------------------------------------------
    def run_row(self, experiment: str, run_id: str) -> dict[str, Any] | None:
        """The run's ``runs`` row with JSON columns decoded; None if absent or damaged."""
        table = _read_table(self.path(experiment, "runs", run_id), name="runs")
        if table is None or table.num_rows == 0:
            return None
        row = table.slice(0, 1).to_pylist()[0]
        for key in JSON_COLUMNS:
            if isinstance(row.get(key), str):
                try:
                    row[key] = json.loads(row[key]) if row[key] else {}
                except json.JSONDecodeError:
                    row[key] = {}
        return row

    def status(self, experiment: str, run_id: str) -> str | None:
        """The run's status; None if it has no readable ``runs`` row (a damaged one warns)."""
        table = _read_table(self.path(experiment, "runs", run_id), columns=["status"])
        if table is None or table.num_rows == 0:
            return None
        return str(table.column("status")[0].as_py())

    def damaged(self, experiment: str, run_id: str) -> list[Path]:
        """The run's files that exist but cannot be read (each warns)."""
        bad = []
        for table in TABLES:
            path = self.path(experiment, table, run_id)
            if not path.exists():
                continue
            try:
                pq.read_table(path)  # the whole file: an intact footer can hide damaged pages
            except (pa.ArrowException, OSError, ValueError) as exc:
                _damaged(path, exc)
                bad.append(path)
        return bad

    def is_done(self, experiment: str, run_id: str) -> bool:
        """A final status, and none of the run's curve files damaged."""
        if self.status(experiment, run_id) not in FINAL_STATUSES:
            return False
        return not [p for p in self.damaged(experiment, run_id) if p.parent.name != "runs"]

    @staticmethod
    def liveness(row: Mapping[str, Any]) -> str:
        """For a ``running`` row: ``live`` (its process runs), ``dead`` (its process on this
        host is gone: a stale row) or ``unknown`` (another host, or a row without an owner;
        see its ``heartbeat``).  Rows with any other status are ``ended``."""
        if row.get("status") != "running":
            return "ended"
        alive = owner_alive(row.get("host"), row.get("pid"))
        return "unknown" if alive is None else ("live" if alive else "dead")

    def experiments(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "runs").is_dir())

    def read(self, table: str, experiments: str | Iterable[str] | None = None) -> pd.DataFrame:
        """The union of a table's files (empty frame with the right columns if none).

        Damaged files are skipped, each with a :class:`DamagedFileWarning` naming it."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; tables: {TABLES}")
        if experiments is None:
            exps = self.experiments()
        elif isinstance(experiments, str):
            exps = [experiments]
        else:
            exps = list(experiments)
        files = sorted(f for e in exps for f in (self.root / e / table).glob("*.parquet"))
        tables = [t for t in (_read_table(f, name=table) for f in files) if t is not None]
        if not tables:
            return pd.DataFrame(columns=list(SCHEMAS[table].names))
        return pa.concat_tables(tables).to_pandas()

    def runs(self, experiments: str | Iterable[str] | None = None) -> pd.DataFrame:
        """The ``runs`` table with its JSON columns decoded into dicts."""
        df = self.read("runs", experiments)
        for key in JSON_COLUMNS:
            if key in df:
                df[key] = df[key].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
        return df

    def lock(self, experiment: str, run_id: str) -> RunLock:
        return RunLock(self.path(experiment, "locks", run_id).with_suffix(".lock"))


class RunClaimed(Exception):
    """Another live process holds the run's lock."""

    def __init__(self, run_id: str, owner: Mapping[str, Any], path: Path) -> None:
        self.run_id, self.owner, self.path = run_id, dict(owner), path
        who = f"{owner.get('host', '?')}:{owner.get('pid', '?')}"
        super().__init__(f"claimed by {who}, skipped")

    @property
    def who(self) -> str:
        return f"{self.owner.get('host', '?')}:{self.owner.get('pid', '?')}"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Ray)
        return (RunClaimed, (self.run_id, self.owner, self.path))


class RunLock:
    """An exclusive claim on one run: a file created with ``O_CREAT | O_EXCL`` holding its
    owner's host, pid, pid start time and heartbeat (``time.time()`` of its last renewal).
    A lock whose owner is dead (same host, pid gone or reused) is broken; one held by a live
    process is respected; one of another host is respected while its heartbeat is younger
    than :func:`stale_lock_s` and broken after (with a :class:`StaleLockWarning`).
    :meth:`holding` renews the heartbeat while the lock is held."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False
        self._me: dict[str, Any] = {}

    def heartbeat_age(self, owner: Mapping[str, Any] | None = None) -> float | None:
        """Seconds since the lock's last heartbeat (its ``heartbeat`` field; a lock written
        before heartbeats were recorded: its modification time); None if there is no lock."""
        owner = self.owner() if owner is None else owner
        beat = owner.get("heartbeat") if isinstance(owner, Mapping) else None
        if not isinstance(beat, int | float):
            try:
                beat = self.path.stat().st_mtime
            except OSError:
                return None
        return max(0.0, time.time() - float(beat))

    def describe(self, owner: Mapping[str, Any] | None = None) -> str:
        """``host:pid`` and the age of its heartbeat."""
        owner = (self.owner() if owner is None else owner) or {}
        age = self.heartbeat_age(owner)
        who = f"{owner.get('host', '?')}:{owner.get('pid', '?')}"
        return who if age is None else f"{who}, last heartbeat {_ago(age)} ago"

    def owner(self, settle_s: float = 0.5) -> dict[str, Any] | None:
        """The lock's owner record; None if there is no lock; ``{}`` if it stays unreadable.

        A lock is created empty and written a moment later (``O_EXCL`` creates, then the
        record is written), and a heartbeat rewrites it in place: a reader that meets it
        in between reads again for up to ``settle_s`` seconds before taking it as
        unreadable (two processes on one folder otherwise said "claimed by ?:?")."""
        deadline = time.monotonic() + settle_s
        while True:
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                return None
            except OSError:
                return {}
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = None
            if isinstance(data, dict):
                return data
            if time.monotonic() >= deadline:
                return {}
            time.sleep(0.01)

    def _try_create(self) -> bool:
        me = {"host": HOST, "pid": os.getpid(), "pid_start": pid_start(os.getpid()),
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "heartbeat": time.time()}
        try:
            fd = create_file(self.path)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
            fh.flush()
            os.fsync(fh.fileno())
        self.held, self._me = True, me
        return True

    def beat(self) -> None:
        """Renew the heartbeat of a lock this process holds (a no-op once it is not ours)."""
        if not self.held:
            return
        owner = self.owner()
        if not owner or owner.get("pid") != os.getpid() or owner.get("host") != HOST:
            return
        self._me = {**self._me, "heartbeat": time.time()}
        try:  # in place: a reader that meets it half-written sees an unreadable, fresh lock
            with open(self.path, "r+") as fh:
                fh.write(json.dumps(self._me))
                fh.truncate()
        except OSError:
            pass

    @contextlib.contextmanager
    def holding(self, run_id: str = "") -> Iterator[RunLock]:
        """Acquire the lock, renew its heartbeat from a thread while the block runs, release it."""
        self.acquire(run_id)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(heartbeat_interval_s()):
                self.beat()

        thread = threading.Thread(target=renew, name=f"heartbeat {self.path.name}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.release()

    def _is_stale(self, owner: Mapping[str, Any] | None) -> bool:
        if owner is None:
            return False
        if not owner:  # unreadable or half-written: stale only once it has aged
            try:
                return time.time() - self.path.stat().st_mtime > 60
            except OSError:
                return False
        if owner.get("host") == HOST and owner.get("pid") == os.getpid():
            return True  # left by this very process (nothing else here can hold it)
        alive = owner_alive(owner.get("host"), owner.get("pid"), owner.get("pid_start"))
        if alive is None:  # another host: alive while it renews its heartbeat
            age = self.heartbeat_age(owner)
            return age is not None and age > stale_lock_s()
        return alive is False

    def claimable(self) -> bool:
        """Whether :meth:`acquire` would get the lock now (free, or stale)."""
        owner = self.owner()
        return owner is None or self._is_stale(owner)

    def _break(self, owner: Mapping[str, Any] | None) -> None:
        """Remove a stale lock, serialised by a second O_EXCL file so that two breakers
        cannot both remove it (one of them would remove the other's fresh lock)."""
        guard = self.path.with_suffix(".break")
        try:
            fd = create_file(guard)
        except FileExistsError:
            try:  # a breaker that died mid-way
                if time.time() - guard.stat().st_mtime > 60:
                    guard.unlink(missing_ok=True)
            except OSError:
                pass
            return
        os.close(fd)
        try:
            if self.owner() == owner:
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)

    def acquire(self, run_id: str = "") -> None:
        """Claim the run or raise :class:`RunClaimed`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._try_create():
                return
            owner = self.owner()
            if owner is None:
                continue  # released meanwhile
            if not self._is_stale(owner):
                raise RunClaimed(run_id or self.path.stem, owner, self.path)
            if owner and owner_alive(owner.get("host"), owner.get("pid")) is None:
                warnings.warn(f"{self.path.stem}: broke the lock of {self.describe(owner)}: no heartbeat "
                              f"for more than {_ago(stale_lock_s())}, so that process is gone",
                              StaleLockWarning, stacklevel=2)
            self._break(owner)
            time.sleep(0.01)
        raise RunClaimed(run_id or self.path.stem, self.owner() or {}, self.path)

    def release(self) -> None:
        if self.held:
            owner = self.owner()
            if owner and owner.get("pid") == os.getpid() and owner.get("host") == HOST:
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
