"""``mlrsnet-bench store migrate``: rewrite a results folder's files in the current layout.

Version 1 of the tables (no ``mlrsnet.schema`` in a file's metadata) typed the ``runs`` table
by its values, so a column that was empty in one file (``error``) was of type null there and
of type string in the next, and ``pandas.read_parquet(<experiment>/runs)`` failed with
"Unsupported cast from string to null"; and it counted ``steps.epoch`` from 0 while
``epochs.epoch`` counted from 1.  Version 2 (:data:`~mlrsnet.harness.store.SCHEMA_VERSION`)
writes every table with one fixed schema and counts ``epoch`` from 1 everywhere.

This command rewrites each version-1 file of every experiment under ``--results`` in version
2 (:func:`~mlrsnet.harness.store.conform`: the same rows and values, the runs table's
columns in their fixed types, ``steps.epoch`` + 1), atomically, one file at a time.  Nothing
else changes: no run is added or removed, a run's id, status (``superseded`` included),
JSON columns and data digests stay as they were, so every run that stood before still
stands and nothing is trained again.  A file already in version 2 is left untouched, so the
command is idempotent and an interrupted migration is finished by running it again.  The
store reads version-1 files as version 2 meanwhile; the migration is for readers other than
this package (pandas, pyarrow, DuckDB, Spark).  A damaged file is listed and left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlrsnet.harness.store import TABLES, Store, _atomic_write, conform


@dataclass
class MigrateReport:
    """What :func:`migrate` did: files rewritten, files already current, files it left."""

    migrated: int = 0
    current: int = 0
    left: list[str] = field(default_factory=list)


def migrate(store: Store, *, dry_run: bool = False) -> MigrateReport:
    """Rewrite every file under ``store.root`` that is not in the current layout."""
    report = MigrateReport()
    for experiment in store.experiments():
        for table in TABLES:
            for path in sorted((store.root / experiment / table).glob("*.parquet")):
                try:
                    data = pq.read_table(path)
                    new = conform(data, table)
                except (pa.ArrowException, OSError, ValueError) as exc:
                    report.left.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                if new is data:
                    report.current += 1
                    continue
                if new.num_rows != data.num_rows:  # conform never drops rows; say so if it did
                    report.left.append(f"{path}: {data.num_rows} rows read, {new.num_rows} converted")
                    continue
                if not dry_run:
                    _atomic_write(new, path)
                report.migrated += 1
    return report


def cmd_migrate(args: Any) -> int:
    report = migrate(Store(args.results), dry_run=args.dry_run)
    verb = "would rewrite" if args.dry_run else "rewrote"
    print(f"{verb} {report.migrated} files in the current layout; {report.current} already were; "
          f"{len(report.left)} left as they were")
    for line in report.left:
        print(f"  left: {line}")
    return 1 if report.left else 0
