"""Cells of small real runs for the report tests: a spec at the smoke profile, 2 epochs."""

from __future__ import annotations

from typing import Any

from mlrsnet.harness.experiment import Cell, parse_spec


def smoke_cells(name: str, tasks: list[str], methods: list[dict[str, Any]], seeds: list[int]) -> list[Cell]:
    """The cells of experiment ``name``: ``tasks`` x ``methods`` ([[methods]] tables) x ``seeds``."""
    spec = {"name": name, "profile": "smoke", "tasks": tasks, "seeds": seeds, "methods": methods,
            "overrides": {"epochs": 2}}
    return parse_spec(spec).cells()
