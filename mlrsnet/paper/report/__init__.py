"""Renderers: pure functions of the Parquet results (they never train).

Each report is ``module:function`` taking ``(store, out_dir, experiment)`` and returning the
paths it wrote; ``mlrsnet-bench report NAME`` looks it up here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from mlrsnet.errors import UserError
from mlrsnet.harness.store import Store

REPORTS = {
    "curves": ("mlrsnet.paper.report.curves", "render_curves", "demo"),
    "demo": ("mlrsnet.paper.report.curves", "render_curves", "demo"),
    "table1": ("mlrsnet.paper.report.table1", "render_table1", "table1"),
    "transfer": ("mlrsnet.paper.report.transfer", "render_transfer", "transfer"),
}


def render(what: str, *, results: Path, out: Path, experiment: str | None = None) -> list[Path]:
    if what not in REPORTS:
        raise UserError(f"unknown report {what!r}; available: {', '.join(REPORTS)}")
    module, func, default_exp = REPORTS[what]
    fn = getattr(importlib.import_module(module), func)
    return fn(Store(results), Path(out), experiment or default_exp)
