"""The Ray Tune trainable: one trial is one cell run through :func:`run_cell`.

Running through ``run_cell`` gives every trial the same Parquet rows as any other run (its
full curve, tagged with its search) and the same resume: the loop checkpoints each epoch
*before* ``on_epoch`` reports to Tune, so a trial that Tune pauses (BOHB) or an
interrupted search continues from its last epoch when the trial starts again; so does a
trial whose worker died, when Tune retries it (``FailureConfig.max_failures``) or a rerun
of the command restarts it.

The last epoch is reported only after ``run_cell`` has written the run's rows: Tune may end
the trial's process as soon as it sees the final result, and the store must be complete
by then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlrsnet.paper.tune.objective import Objective, diverged_report, epoch_report


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs besides its sampled config (shipped to Ray workers)."""

    experiment: str
    task: str
    profile: str
    method: str
    seed: int
    epochs: int
    objective: Objective
    space: Mapping[str, tuple]
    store_root: str
    data_dir: str | None
    device: str | None
    cpus: float
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: Tags shared by every trial of the search (search, search_id, searcher_seed, ...).
    tags: Mapping[str, Any] = field(default_factory=dict)
    fixed_hparams: Mapping[str, Any] = field(default_factory=dict)
    #: Test hook (tests/paper/tune/test_failures.py): a marker file; while it does not
    #: exist, a trial creates it and kills its own worker process (``os._exit``) at the end
    #: of epoch 1, after the epoch checkpoint, as a crashed or preempted worker would.
    die_once_marker: str | None = None
    #: Epochs (from 1) after which the trial evaluates the test split; None: every epoch
    #: (:func:`mlrsnet.paper.tune.command.test_epochs`).
    test_epochs: tuple[int, ...] | None = None


def trial_number(trial_name: str | None) -> int | None:
    """The running number in a trial name made by :func:`~mlrsnet.paper.tune.search.trial_name`
    (``"3_ab12cd34"`` -> 3)."""
    head = str(trial_name or "").split("_", 1)[0]
    return int(head) if head.isdigit() else None


def trial_cell(setup: TrialSetup, config: Mapping[str, Any], trial_id: str,
               trial_name: str | None = None):
    """The cell a trial runs: its hyper-parameters decoded, tagged with its search."""
    from mlrsnet.harness.experiment import Cell
    from mlrsnet.paper.tune.spaces import decode

    hparams = {**dict(setup.fixed_hparams), **decode(config, setup.space)}
    tags = {**dict(setup.tags), "trial_id": trial_id, "trial": trial_number(trial_name)}
    return Cell(task=setup.task, profile=setup.profile, method=setup.method, hparams=hparams,
                seed=setup.seed, experiment=setup.experiment, overrides=dict(setup.overrides),
                tags=tags)


def stored_final_report(setup: TrialSetup, run_id: str) -> dict[str, Any]:
    """The final report of a run the store already holds (a trial that finished before
    Tune recorded it, e.g. interrupted between the two): replayed, not re-trained."""
    import pandas as pd

    from mlrsnet.harness.store import Store

    store = Store(setup.store_root)
    status = store.status(setup.experiment, run_id)
    path = store.path(setup.experiment, "epochs", run_id)
    epochs = pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["epoch"])
    last = int(epochs["epoch"].max()) if len(epochs) else 0
    if status == "diverged":
        return diverged_report(last + 1, setup.objective, run_id)
    rows = epochs[epochs["epoch"] == last]
    metrics = {f"{r.split}/{r.metric}": float(r.value) for r in rows.itertuples()}
    return epoch_report(last, metrics, setup.objective, run_id)


def _die_once(marker: str) -> None:
    import os

    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(1)


def earlier_attempt(setup: TrialSetup, cell: Any) -> Any:
    """``cell`` as an earlier attempt of the same trial ran it, if there is one to continue.

    ``Tuner.restore(restart_errored=True)`` (the rerun of a search with failed trials)
    restarts an errored trial under a *new* Tune trial id, which is part of the run's
    identity; the earlier attempt's run (same search, trial number and hyper-parameters;
    ``failed``, or ``running`` with a dead owner) is continued instead, from its epoch
    checkpoint, so the search keeps one run per trial."""
    import json

    from mlrsnet.harness.store import Store

    tags = dict(cell.tags)
    if tags.get("trial") is None:
        return cell
    runs = Store(setup.store_root).runs(setup.experiment)
    if runs.empty:
        return cell
    want = json.dumps(dict(cell.hparams), sort_keys=True, default=str)
    for row in runs.to_dict("records"):
        t = row.get("tags") if isinstance(row.get("tags"), dict) else {}
        if (t.get("search_id") != tags.get("search_id") or t.get("trial") != tags["trial"]
                or not t.get("trial_id") or t.get("trial_id") == tags.get("trial_id")):
            continue
        if json.dumps(dict(row.get("hparams") or {}), sort_keys=True, default=str) != want:
            continue
        if row.get("status") == "failed" or (row.get("status") == "running"
                                             and Store.liveness(row) == "dead"):
            return cell.with_(tags={**tags, "trial_id": t["trial_id"]})
    return cell


def run_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The function trainable (bound to ``setup`` with ``tune.with_parameters``)."""
    from ray import tune

    from mlrsnet.harness.executor import run_cell, wait_for_claims
    from mlrsnet.harness.files import HOST
    from mlrsnet.harness.store import RunClaimed, Store

    context = tune.get_context()
    cell = trial_cell(setup, config, context.get_trial_id() or "local", context.get_trial_name())
    cell = earlier_attempt(setup, cell)
    final: dict[str, Any] = {}

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if setup.die_once_marker and epoch == 1:
            _die_once(setup.die_once_marker)
        report = epoch_report(epoch, metrics, setup.objective, cell.run_id)
        if epoch < setup.epochs:
            tune.report(report)
        else:
            final.update(report)

    store = Store(setup.store_root)
    while True:
        try:  # a trial trains with as many intra-op threads as CPUs it reserves (run_cell sets them)
            result = run_cell(cell, store, data_dir=setup.data_dir, device=setup.device, quiet=True,
                              on_epoch=on_epoch, threads=max(1, int(setup.cpus)), test_epochs=setup.test_epochs)
            break
        except RunClaimed as exc:
            if exc.owner.get("host") == HOST:
                raise  # a live process here (Tune retries the trial, as before)
            wait_for_claims(store, [cell])  # a lost node's worker: until its heartbeat is stale
    if result is None:
        final = stored_final_report(setup, cell.run_id)
    elif result.status == "diverged":
        done = max((r["epoch"] for r in result.epochs), default=0)
        final = diverged_report(done + 1, setup.objective, cell.run_id)
    tune.report(final)

