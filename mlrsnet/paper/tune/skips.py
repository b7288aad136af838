"""Searches that cannot run: a task whose dataset is not prepared is skipped, and the reason
is recorded in the store so the reports list the search and why it did not run.

Used by the searches (:mod:`mlrsnet.paper.tune.command`) and by the transfer runs
(:mod:`mlrsnet.paper.tune.transfer_runs`) alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mlrsnet.errors import UserError
from mlrsnet.harness.experiment import Cell, ExperimentSpec
from mlrsnet.harness.store import Store
from mlrsnet.paper.tasks import Task


def data_missing(task: Task, profile: str, data_dir: str | None) -> str | None:
    """``None`` if the task's dataset is on disk, else a one-line reason."""
    from mlrsnet.paper.data import find_corpus_dir, find_image_file
    from mlrsnet.paper.data.locate import prepare_command

    try:
        if task.kind == "image":
            find_image_file(task.dataset, allow_mini=task.profile(profile).allow_mini_data,
                            data_dir=data_dir)
        else:
            find_corpus_dir(task.dataset, data_dir=data_dir)
    except UserError:
        return f"no data: {task.dataset} is not prepared (`{prepare_command(task.dataset)}`)"
    return None


def require_data(tasks: list[Task], profile: str, data_dir: str | None, what: str) -> None:
    """At a profile that ``requires_data`` (``paper``), refuse up front, before anything
    trains, when a task's dataset is not prepared: one paragraph with the one command that
    prepares them all (the small profiles skip such a task and list it instead)."""
    from mlrsnet.paper.data.locate import prepare_command

    strict = [t for t in tasks if getattr(t.profile(profile), "requires_data", False)]
    missing = [t for t in strict if data_missing(t, profile, data_dir)]
    if not missing:
        return
    names = list(dict.fromkeys(t.dataset for t in missing))
    raise UserError(
        f"{what} at profile {profile} needs the full datasets, and {', '.join(names)} "
        f"{'is' if len(names) == 1 else 'are'} not prepared (needed by "
        f"{', '.join(t.name for t in missing)}). Prepare {'it' if len(names) == 1 else 'them'} "
        f"first with `{prepare_command(names, data_dir)}` (downloads and verifies the official "
        "releases; offline, add --source FOLDER holding the official files), then run the same "
        "command again. Nothing was trained.")


def record_skip(store: Store, spec: ExperimentSpec, task: Task, searcher: str, reason: str) -> None:
    """A ``skipped`` row in ``runs``, so the report lists the search and why it did not run."""
    cell = Cell(task=task.name, profile=spec.profile, method="(search)", experiment=spec.name,
                tags={"search": searcher, "skipped": True})
    now = datetime.now(UTC).isoformat(timespec="seconds")
    store.write_run_row({"run_id": cell.run_id, "experiment": spec.name, "task": task.name,
                         "profile": spec.profile, "method": cell.method, "hparams": {},
                         "seed": spec.seeds[0], "tags": dict(cell.tags), "status": "skipped",
                         "error": reason, "started": now, "finished": now})
