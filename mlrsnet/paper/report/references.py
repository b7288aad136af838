"""The paper's reference material a stored spec carries, so a report draws it from the store.

A figure spec's ``[report]`` table (``benchmarks/fig*.toml``) states the paper's figure, its
claim and its numbers; this module checks that table's keys and, for a run at the
``paper`` profile, adds the authors' meta-training curves (``official_curves``: task ->
setting of ``meta_train_curves.csv`` in the official reference folder) as
``references["curves"]`` of the stored spec.  Only paper-profile figures draw them: beside
a scaled-down run of a few epochs a 200-epoch curve says nothing.  The folder is looked
for in ``$MLRSNET_REFERENCE_DIR`` (or its ``official-mlrsnet``), ``$MLRSNET_CHECKPOINTS``
(the official checkpoints' folder holds the logs too) and ``../shared/reference/official-mlrsnet``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlrsnet.harness.experiment import SpecError
from mlrsnet.paper.report.data import REPORT_KEYS

CURVES_FILE = "meta_train_curves.csv"
CURVES_LABEL = "official MLR-SNet meta-training (authors' log)"


def check_report(report: Mapping[str, Any] | None, source: str) -> None:
    """Refuse unknown keys of a ``[report]`` table (a typo would silently drop a claim)."""
    if not report:
        return
    bad = sorted(set(report) - REPORT_KEYS)
    if bad:
        raise SpecError(f"{source}: key 'report.{bad[0]}' is not known; allowed: {', '.join(sorted(REPORT_KEYS))}")


def official_folder() -> Path | None:
    candidates = []
    env = os.environ.get("MLRSNET_REFERENCE_DIR")
    if env:
        candidates += [Path(env), Path(env) / "official-mlrsnet"]
    if os.environ.get("MLRSNET_CHECKPOINTS"):
        candidates.append(Path(os.environ["MLRSNET_CHECKPOINTS"]))
    candidates.append(Path("..") / "shared" / "reference" / "official-mlrsnet")
    return next((c for c in candidates if (c / CURVES_FILE).is_file()), None)


def references(report: Mapping[str, Any] | None, profile: str, folder: Path | None = None) -> dict[str, Any]:
    """What the stored spec carries besides the ``[report]`` table: at the paper profile, the
    official test-accuracy curves of the tasks ``official_curves`` names (when found)."""
    wanted = dict((report or {}).get("official_curves") or {})
    if profile != "paper" or not wanted:
        return {}
    folder = folder or official_folder()
    if folder is None:
        return {"missing": f"{CURVES_FILE} not found (set $MLRSNET_REFERENCE_DIR)"}
    import pandas as pd

    table = pd.read_csv(folder / CURVES_FILE)
    curves = {}
    for task, setting in wanted.items():
        rows = table[table["setting"] == setting].sort_values("epoch")
        if len(rows):  # test accuracy in % in the log, stored as a fraction like the epochs table
            curves[task] = {"label": CURVES_LABEL, "epoch": [int(e) for e in rows["epoch"]],
                            "value": [float(v) / 100.0 for v in rows["test_acc"]]}
    return {"curves": curves}


def stored_spec(spec: Any, data_dir: str | None = None) -> dict[str, Any]:
    """What the paper's commands (``reproduce``, ``tune``) store beside an experiment's
    results: the resolved spec, its tasks' reference values at its profile, and the paper's
    reference material (:func:`references`)."""
    from mlrsnet.harness.experiment import spec_record, task_facts

    check_report(spec.report, str(spec.source or spec.name))
    return {**spec_record(spec), "task_facts": task_facts(spec.tasks, spec.profile, data_dir),
            "references": references(spec.report, spec.profile)}
