"""Searches as the Parquet tables record them: which trials, which one is best.

Pure functions of the ``runs`` and ``epochs`` tables (no Ray), shared by the Table 1 and
transfer renderers and by the transfer runner, so all three agree on "the best
configuration a search found":

- the trials of a search are the runs tagged with its ``search_id``; when a search was
  started again (``--force`` or a new budget) only the newest ``search_id`` per
  (task, profile, searcher, objective) counts;
- the best trial is the one with the best *final-epoch* objective among trials that
  trained the full budget (``finished``); diverged, stopped-early (BOHB) and failed trials
  count as trials but cannot be best; equally good trials go to the lowest trial number
  (then run_id), so the choice does not depend on the order the rows were read in.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

SEARCH_KEYS = ["task", "profile", "search", "objective"]


def mode_of(objective: str) -> str:
    """``max`` for accuracies, ``min`` for perplexities and losses."""
    return "max" if objective.endswith("acc") else "min"


def trial_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs that are search trials, with their search tags as columns."""
    if runs.empty or "tags" not in runs:
        return pd.DataFrame(columns=[*runs.columns, "search", "search_id", "objective"])
    tags = runs["tags"]
    is_trial = tags.map(lambda t: isinstance(t, dict) and "search_id" in t)
    out = runs[is_trial].copy()
    for key in ("search", "search_id", "objective", "searcher_seed", "trial"):
        out[key] = out["tags"].map(lambda t, k=key: t.get(k))
    return out


def skipped_searches(runs: pd.DataFrame) -> pd.DataFrame:
    """Marker rows of searches that could not run (``status == "skipped"``), with the reason."""
    if runs.empty:
        return pd.DataFrame(columns=["task", "profile", "search", "reason"])
    rows = runs[runs["status"] == "skipped"].copy()
    rows["search"] = rows["tags"].map(lambda t: t.get("search"))
    rows["reason"] = rows["error"]
    return rows[["task", "profile", "search", "reason"]]


def latest_searches(trials: pd.DataFrame) -> pd.DataFrame:
    """Only the newest search per (task, profile, searcher, objective).

    ``search_id`` ends in its UTC start time (``...@20250101T120000Z``), so the newest is
    the largest once the time is compared."""
    if trials.empty:
        return trials
    stamp = trials["search_id"].map(lambda s: str(s).rsplit("@", 1)[-1])
    newest = stamp.groupby([trials[k] for k in SEARCH_KEYS]).transform("max")
    return trials[stamp == newest]


def final_metrics(epochs: pd.DataFrame, run_ids: Any) -> dict[str, dict[str, float]]:
    """run_id -> {"val/acc": ..., "test/acc": ...} at each run's last epoch."""
    ep = epochs[epochs["run_id"].isin(set(run_ids))]
    if ep.empty:
        return {}
    last = ep.groupby("run_id")["epoch"].transform("max")
    ep = ep[ep["epoch"] == last]
    out: dict[str, dict[str, float]] = {}
    for row in ep.itertuples():
        out.setdefault(row.run_id, {})[f"{row.split}/{row.metric}"] = float(row.value)
    return out


def _trial_order(row: Any) -> tuple[float, str]:
    """How equally good trials are ordered: by trial number (from 1), then by run_id."""
    number = getattr(row, "trial", None)
    try:
        key = float(number) if number is not None and number == number else float("inf")
    except (TypeError, ValueError):
        key = float("inf")
    return key, str(row.run_id)


def summarize_search(trials: pd.DataFrame, finals: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Counts and the best trial of one search's trials."""
    objective = str(trials["objective"].iloc[0])
    status = trials["status"].value_counts().to_dict()
    summary: dict[str, Any] = {
        "task": trials["task"].iloc[0], "profile": trials["profile"].iloc[0],
        "search": trials["search"].iloc[0], "objective": objective,
        "search_id": trials["search_id"].iloc[0], "method": trials["method"].iloc[0],
        "searcher_seed": trials["searcher_seed"].iloc[0],
        "trials": len(trials), "finished": status.get("finished", 0),
        "stopped": status.get("stopped", 0), "diverged": status.get("diverged", 0),
        "failed": status.get("failed", 0), "running": status.get("running", 0),
        "best_run_id": None, "best_hparams": None, "best_value": None, "best_test": None,
    }
    split, metric = objective.split("/")
    sign = 1.0 if mode_of(objective) == "max" else -1.0
    candidates = []
    for row in trials[trials["status"] == "finished"].itertuples():
        value = finals.get(row.run_id, {}).get(objective)
        if value is None or value != value:
            continue
        candidates.append((value, row))
    if candidates:
        # Ties go to the lowest trial number (then run_id), never to row order: the
        # local and the cluster reading of the same trials must pick the same one.
        value, row = min(candidates, key=lambda c: (-sign * c[0], *_trial_order(c[1])))
        summary.update(best_run_id=row.run_id, best_hparams=dict(row.hparams), best_value=value,
                       best_test=finals.get(row.run_id, {}).get(f"test/{metric}"))
    return summary


def summarize_searches(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per (newest) search: trial counts, best hyper-parameters, best metric."""
    trials = latest_searches(trial_runs(runs))
    if trials.empty:
        return pd.DataFrame(columns=[*SEARCH_KEYS, "search_id", "trials", "best_hparams"])
    finals = final_metrics(epochs, trials["run_id"])
    rows = [summarize_search(g, finals) for _, g in trials.groupby("search_id", sort=True)]
    return pd.DataFrame(rows)


def best_trial(runs: pd.DataFrame, epochs: pd.DataFrame, search_id: str) -> dict[str, Any] | None:
    """The summary of one search by id (``None`` if it has no trials)."""
    trials = trial_runs(runs)
    trials = trials[trials["search_id"] == search_id]
    if trials.empty:
        return None
    return summarize_search(trials, final_metrics(epochs, trials["run_id"]))
