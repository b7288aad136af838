"""The README's task table is the registry's, not a hand-kept copy."""

from __future__ import annotations

from pathlib import Path

from mlrsnet.paper.report.tasks_table import tasks_table, with_table
from mlrsnet.paper.tasks import TASKS

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_table_has_a_row_per_task_with_paper_parameter_counts() -> None:
    table = tasks_table()
    for name, task in TASKS.items():
        assert f"| {name} |" in table
        if task.paper_params:
            assert f"{task.paper_params:,}" in table


def test_the_readme_table_matches_the_registry() -> None:
    text = README.read_text()
    assert with_table(text) == text, "regenerate with: python -m mlrsnet.paper.report.tasks_table README.md"
