"""Task registry: ``TASKS[name]`` and :func:`get_task` with a helpful error."""

from __future__ import annotations

import difflib

from mlrsnet.errors import UserError
from mlrsnet.paper.profiles import PROFILES, Profile
from mlrsnet.paper.tasks.catalog import build_catalog
from mlrsnet.paper.tasks.spec import Task

TASKS: dict[str, Task] = build_catalog()


def get_task(name: str) -> Task:
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown task {name!r}.{hint} Tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["PROFILES", "Profile", "TASKS", "Task", "get_task"]
