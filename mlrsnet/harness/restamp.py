"""``mlrsnet-bench store restamp``: add content digests to runs recorded before them.

Runs recorded before the data identity carried a sha256 (``[size, mtime_ns]`` per file) stand
only while their data folder and its files' modification times are unchanged
(:func:`~mlrsnet.harness.executor.data_mismatch`), so a fresh copy of the same data set (a
new checkout of ``../shared``, another machine) would have every such run trained again.
This command is the explicit, once-only step of a user who knows the data is the same: for
each such row whose file is found now under the same relative name with the same size, it
appends the sha256 of the file found now.  From then on the row stands wherever those bytes
are found, and is trained again if they change.  Nothing else in the row changes, and a file
that is missing or has another size is left as it is and listed.

Language-model runs recorded before text runs named their corpus folder (source ``"ptb
corpus"``, no files) get the files of that corpus as found now, and the data folders
searched now, for the same reason.

Search trials the scheduler stopped early (BOHB; status ``stopped``) were recorded from
their ``running`` row, which names the data folders but not the file the trial read, so
they stood only in the folders they were recorded with.  Every trial of a search reads the
same data: such a trial gets the source and the digested files of a trial of the same
search (same task, profile and data folders) that recorded them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlrsnet.harness.executor import _sha256, counterpart, data_search_dirs
from mlrsnet.harness.store import Store


@dataclass
class RestampReport:
    """What :func:`restamp` did: rows rewritten, rows already stamped, files it left."""

    restamped: int = 0
    current: int = 0
    left: list[str] = field(default_factory=list)


def restamp(store: Store, data_dir: str | None = None, *, dry_run: bool = False) -> RestampReport:
    """Append the current file's sha256 to every legacy ``[size, mtime_ns]`` stamp whose file
    is found now with the same size; see the module docstring."""
    dirs = data_search_dirs(data_dir)
    report = RestampReport()
    for experiment in store.experiments():
        runs = store.runs(experiment)
        for run_id in ([] if runs.empty else runs["run_id"]):
            row = store.run_row(experiment, run_id)
            data = (row or {}).get("data")
            files = data.get("files") if isinstance(data, dict) else None
            if not files:
                where = f"{experiment}/{run_id}"
                stamped = (_sibling_stamps(row, runs, report, where) if (row or {}).get("status") == "stopped"
                           else _corpus_stamps(data, dirs, report, where))
                if stamped is not None:
                    if not dry_run:
                        store.write_run_row({**row, "data": stamped})
                    report.restamped += 1
                continue
            if all(len(stamp) >= 3 for stamp in files.values()):
                report.current += 1
                continue
            new, ok = {}, True
            for path, stamp in files.items():
                if len(stamp) >= 3:
                    new[path] = list(stamp)
                    continue
                now = counterpart(path, list(data.get("dirs") or []), dirs)
                st = now.stat() if now is not None else None
                if st is None or st.st_size != stamp[0]:
                    report.left.append(f"{experiment}/{run_id}: {path} "
                                       f"{'not found' if st is None else 'has another size'}")
                    ok = False
                    break
                new[path] = [stamp[0], stamp[1], _sha256(str(now.resolve()), st.st_size, st.st_mtime_ns)]
            if not ok:
                continue
            if not dry_run:
                store.write_run_row({**row, "data": {**data, "files": new}})
            report.restamped += 1
    return report


def _sibling_stamps(row: dict[str, Any], runs: Any, report: RestampReport, where: str) -> dict[str, Any] | None:
    """A stopped trial's data identity with the source and digested files of a trial of the
    same search (same task, profile and recorded data folders) that recorded them; None (and
    listed) when no such trial is stored."""
    data, tags = row.get("data") or {}, row.get("tags") or {}
    search_id = tags.get("search_id") if isinstance(tags, dict) else None
    if not isinstance(data, dict) or not search_id:
        return None
    for other in runs.to_dict("records"):
        theirs, their_tags = other.get("data"), other.get("tags")
        if (not isinstance(theirs, dict) or not isinstance(their_tags, dict) or other["run_id"] == row["run_id"]
                or their_tags.get("search_id") != search_id or other.get("task") != row.get("task")
                or other.get("profile") != row.get("profile") or theirs.get("dirs") != data.get("dirs")):
            continue
        files = theirs.get("files") or {}
        if files and theirs.get("source") and all(len(stamp) >= 3 for stamp in files.values()):
            return {**data, "source": theirs["source"], "files": files}
    report.left.append(f"{where}: a stopped trial, and no trial of its search {search_id} recorded its data files")
    return None


def _corpus_stamps(data: Any, dirs: list[str], report: RestampReport,
                   where: str) -> dict[str, Any] | None:
    """A language-model run recorded before text runs named their corpus folder (source
    ``"<name> corpus"``, no files): its data identity with the files of that corpus as
    found now, or None (not such a row, or its corpus is not found)."""
    from pathlib import Path

    from mlrsnet.harness.executor import _fingerprint

    source = data.get("source") if isinstance(data, dict) else None
    if not isinstance(source, str) or not source.endswith(" corpus"):
        return None
    name = source[: -len(" corpus")]
    # the data layer's layout, <data dir>/<name>/, first folder that has it (as it looks)
    folder = next((Path(d) / name for d in dirs if (Path(d) / name).is_dir()), None)
    if folder is None:
        report.left.append(f"{where}: corpus {name!r} not found in {', '.join(dirs) or '(no folder)'}")
        return None
    return {**data, "dirs": dirs, "source": str(folder.resolve()), "files": _fingerprint(str(folder))}


def cmd_restamp(args: Any) -> int:
    report = restamp(Store(args.results), args.data_dir, dry_run=args.dry_run)
    verb = "would add" if args.dry_run else "added"
    print(f"{verb} content digests to {report.restamped} runs; {report.current} already had them; "
          f"{len(report.left)} left as they were")
    for line in report.left:
        print(f"  left: {line}")
    return 0
