"""Renderers: pure functions of the Parquet results (they never train).

:data:`REPORTS` is the one registry of reports: ``mlrsnet-bench report NAME`` looks a name
up here, an experiment's ``all`` renders, in this order, every entry with an ``artefacts``
builder (``(data, out, write) -> [Artefact]``, :mod:`mlrsnet.paper.report.figures`), and
the reproduction's report renders the entry named like a search stage (``table1``) as that
stage's table.  An entry with ``render`` is called as ``render(store, out, experiment)``
and returns the paths it wrote.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlrsnet.errors import UserError

if TYPE_CHECKING:  # REPORTS is read to build the command line, which must not import pandas
    import pandas as pd

    from mlrsnet.harness.store import Store


@dataclass(frozen=True)
class Report:
    """One report: its module and either its ``render`` function or its ``artefacts``
    builder (then it is part of an experiment's ``all`` and index); ``default`` is the
    experiment rendered when none is named."""

    module: str
    render: str | None = None
    artefacts: str | None = None
    default: str = "demo"
    #: ``(store, experiment) -> [document blocks]``: what a reproduction's index shows of it
    blocks: str | None = None


REPORTS: dict[str, Report] = {
    "figures": Report("mlrsnet.paper.report.curves", artefacts="curves_artefacts"),
    "lr-schedules": Report("mlrsnet.paper.report.curves", artefacts="lr_artefacts"),
    "profile": Report("mlrsnet.paper.report.figures", artefacts="profile_artefacts"),
    "summary": Report("mlrsnet.paper.report.figures", artefacts="summary_artefacts"),
    "cost": Report("mlrsnet.paper.report.cost", artefacts="cost_artefacts", default="fig2_meta_test"),
    "index": Report("mlrsnet.paper.report.figures", render="render_index"),
    "all": Report("mlrsnet.paper.report.figures", render="render_all"),
    "demo": Report("mlrsnet.paper.report.curves", render="render_demo"),
    "curves": Report("mlrsnet.paper.report.curves", render="render_demo"),
    "table1": Report("mlrsnet.paper.report.table1", render="render_table1", default="table1",
                     blocks="index_blocks"),
    "transfer": Report("mlrsnet.paper.report.transfer", render="render_transfer", default="transfer"),
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
    entry = REPORTS[what]
    from mlrsnet.harness.store import Store

    store, exp = Store(results), experiment or entry.default
    if entry.render:
        return getattr(importlib.import_module(entry.module), entry.render)(store, Path(out), exp)
    # by name, as the entries above: the renderers import this package, not the other way
    return importlib.import_module("mlrsnet.paper.report.figures").render_artefacts(what, store, Path(out), exp)
