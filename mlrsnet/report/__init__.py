"""Renderers: pure functions of the Parquet results (they never train)."""

from __future__ import annotations

from pathlib import Path

from mlrsnet.errors import UserError
from mlrsnet.store import Store


def render(what: str, *, results: Path, out: Path, experiment: str | None = None) -> list[Path]:
    store = Store(results)
    if what in ("demo", "curves"):
        from mlrsnet.report.curves import plot_experiment

        exp = experiment or "demo"
        try:
            return plot_experiment(store, exp, out)
        except FileNotFoundError as exc:
            raise UserError(f"{exc}; run the experiment first (e.g. `make demo`)") from None
    raise UserError(f"unknown report {what!r}; available: demo, curves")
