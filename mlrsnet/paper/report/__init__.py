"""Renderers: pure functions of the Parquet results (they never train).

Each report is ``module:function`` taking ``(store, out_dir, experiment)`` and returning the
paths it wrote; ``mlrsnet-bench report NAME`` looks it up here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from mlrsnet.errors import UserError

if TYPE_CHECKING:  # REPORTS is read to build the command line, which must not import pandas
    import pandas as pd

    from mlrsnet.harness.store import Store

REPORTS = {
    "curves": ("mlrsnet.paper.report.curves", "render_curves", "demo"),
    "demo": ("mlrsnet.paper.report.curves", "render_curves", "demo"),
    "table1": ("mlrsnet.paper.report.table1", "render_table1", "table1"),
    "transfer": ("mlrsnet.paper.report.transfer", "render_transfer", "transfer"),
    "figures": ("mlrsnet.paper.report.figures", "render_figures", "demo"),
    "lr-schedules": ("mlrsnet.paper.report.figures", "render_lr_schedules", "demo"),
    "profile": ("mlrsnet.paper.report.figures", "render_profile", "demo"),
    "summary": ("mlrsnet.paper.report.figures", "render_summary", "demo"),
    "cost": ("mlrsnet.paper.report.cost", "render_cost", "fig2_meta_test"),
    "index": ("mlrsnet.paper.report.figures", "render_index", "demo"),
    "all": ("mlrsnet.paper.report.figures", "render_all", "demo"),
}


#: Statuses whose curves a report can draw.
DRAWABLE = ("finished", "diverged")


def require_finished(runs: pd.DataFrame, store: Store, experiment: str, hint: str,
                     also: tuple[str, ...] = ()) -> None:
    """Refuse to render an experiment none of whose runs finished (or diverged, or has one of
    the statuses ``also``, e.g. a search's ``skipped`` row): say so, with the statuses it
    has, instead of failing on empty tables."""
    if runs.empty:
        raise UserError(f"no runs for experiment {experiment!r} under {store.root}; {hint}")
    if runs["status"].isin(DRAWABLE + tuple(also)).any():
        return
    counts = runs["status"].value_counts()
    have = ", ".join(f"{n} {status}" for status, n in counts.items())
    errors = runs.loc[runs["status"] == "failed", "error"].dropna() if "error" in runs else []
    first = f"; first error: {str(errors.iloc[0]).splitlines()[0][:200]}" if len(errors) else ""
    raise UserError(f"experiment {experiment!r} under {store.root} has no finished run yet "
                    f"({have}){first}; nothing to report: {hint}")


def render(what: str, *, results: Path, out: Path, experiment: str | None = None) -> list[Path]:
    if what not in REPORTS:
        raise UserError(f"unknown report {what!r}; available: {', '.join(REPORTS)}")
    from mlrsnet.harness.store import Store

    module, func, default_exp = REPORTS[what]
    fn = getattr(importlib.import_module(module), func)
    return fn(Store(results), Path(out), experiment or default_exp)
