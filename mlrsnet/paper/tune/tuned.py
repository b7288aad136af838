"""Cells that train a search's best configuration again (``tuned = {...}`` in a spec).

The paper tuned first and then trained: Table 1's searches pick MultiStep's (alpha0,
gamma_M), and the supplement's figures show runs with those values.  A figure spec names
the search instead of the numbers (``tuned = { experiment = "table1", search = "bayesopt" }``,
optionally ``task`` for a configuration found on another task, as Fig. 5 applies the
CIFAR-10 values elsewhere, and ``profile``).  This module looks the best trial up in the
store with the same rule as Table 1 (:func:`mlrsnet.paper.tune.results.summarize_searches`),
among searches recorded complete (a search still running, or with failed trials, is not
used: its best could still change), and fills the cell in: the method the search tuned, its best hyper-parameters (fixed
``hparams`` of the spec entry win), and ``tags["tuned"]`` naming the search (``search_id``)
and its best run (``from_run``), so the run id changes when the search is redone and the
cost report can add the search's trials to the run's cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from mlrsnet.harness.experiment import Cell
from mlrsnet.harness.store import Store
from mlrsnet.paper.tune.results import summarize_searches
from mlrsnet.paper.tune.search import completed_search_ids


def is_unresolved(cell: Cell) -> bool:
    """A cell whose ``tuned`` reference has not been looked up yet."""
    ref = cell.tags.get("tuned")
    return isinstance(ref, dict) and "search_id" not in ref


def best_of(summaries: pd.DataFrame, task: str, profile: str, search: str,
            complete: set[str] | None = None, objective: str | None = None) -> dict[str, Any] | None:
    """The newest complete search of ``search`` on ``task`` at ``profile`` with a best
    trial, or None (``complete``: the ids of the searches recorded complete; ``None``
    accepts any; ``objective``: only searches on that split, ``"val"`` or ``"test"``).
    Otherwise a search tuned on the held-out objective is preferred to one tuned on test
    (the paper's Table 1 objective is the validation metric)."""
    if summaries.empty:
        return None
    rows = summaries[(summaries["task"] == task) & (summaries["profile"] == profile)
                     & (summaries["search"] == search) & summaries["best_hparams"].notna()]
    if complete is not None:
        rows = rows[rows["search_id"].isin(complete)]
    if objective is not None:
        rows = rows[rows["objective"].str.startswith(objective + "/")]
    if rows.empty:
        return None
    rows = rows.assign(_val=rows["objective"].str.startswith("val/")).sort_values(
        ["_val", "search_id"], ascending=[False, False], kind="stable")
    return rows.iloc[0].to_dict()


class Resolver:
    """Looks ``tuned`` references up in one store (each search experiment read once)."""

    def __init__(self, store: Store, search_profile: str) -> None:
        self.store, self.search_profile = store, search_profile
        self._summaries: dict[str, tuple[pd.DataFrame, set[str]]] = {}

    def summaries(self, experiment: str) -> tuple[pd.DataFrame, set[str]]:
        """The experiment's search summaries and the ids of its complete searches."""
        if experiment not in self._summaries:
            self._summaries[experiment] = (
                summarize_searches(self.store.runs(experiment), self.store.read("epochs", experiment)),
                completed_search_ids(self.store.root, experiment))
        return self._summaries[experiment]

    def resolve(self, cell: Cell) -> tuple[Cell | None, str | None]:
        """The cell with its reference filled in, or ``None`` and why it cannot be yet."""
        if not is_unresolved(cell):
            return cell, None
        ref = dict(cell.tags["tuned"])
        task = ref.get("task") or cell.task
        profile = ref.get("profile") or self.search_profile
        summaries, complete = self.summaries(ref["experiment"])
        best = best_of(summaries, task, profile, ref["search"], complete=complete)
        if best is None:
            return None, (f"no complete {ref['search']} search on {task} at profile {profile} in "
                          f"experiment {ref['experiment']!r} under {self.store.root}; run that search first")
        resolved = {**ref, "task": task, "profile": profile, "search_id": best["search_id"],
                    "from_run": best["best_run_id"]}
        return cell.with_(method=cell.method or str(best["method"]),
                          hparams={**dict(best["best_hparams"]), **dict(cell.hparams)},
                          tags={**dict(cell.tags), "tuned": resolved}), None


def resolve_tuned(cells: Iterable[Cell], store: Store, search_profile: str) -> tuple[list[Cell], list[str]]:
    """``cells`` with every ``tuned`` reference filled in, and a note for each one that
    cannot be (no finished search yet): those cells are left out, not trained with
    made-up values."""
    resolver = Resolver(store, search_profile)
    out: list[Cell] = []
    notes: dict[str, None] = {}
    for cell in cells:
        resolved, why = resolver.resolve(cell)
        if resolved is not None:
            out.append(resolved)
        else:
            notes[f"{cell.label or cell.tags['tuned']['search']} on {cell.task}: {why}"] = None
    return out, list(notes)
