"""The method list printed by ``mlrsnet-bench list methods --markdown`` and embedded in the
README, generated from the registry as the task table is (:mod:`.tasks_table`).

The README lists the methods shipped in this repository; a module dropped into
``baselines/`` appears in ``mlrsnet-bench list methods`` and works everywhere at once, and
joins the README's list when ``python -m mlrsnet.paper.report.methods_list README.md`` is run
before it is committed (``tests/test_readme.py`` checks the committed modules only, so an
uncommitted plug-in needs no other edit).
"""

from __future__ import annotations

from collections.abc import Mapping

from mlrsnet.harness.contract import Method
from mlrsnet.harness.registry import discover, method_origin

START, END = "<!-- methods-list:start -->", "<!-- methods-list:end -->"


def methods_list(methods: Mapping[str, type[Method]] | None = None) -> str:
    """One Markdown item per method, by name: ``- `name` (`baselines/x.py`): description``."""
    methods = discover() if methods is None else methods
    return "\n".join(f"- `{name}` (`{method_origin(cls)}`): {cls.description}"
                     for name, cls in sorted(methods.items()))


def with_methods(readme: str, methods: Mapping[str, type[Method]] | None = None) -> str:
    """``readme`` with the text between the method-list markers replaced by the list."""
    from mlrsnet.paper.report.document import between_markers

    return between_markers(readme, START, END, methods_list(methods))


if __name__ == "__main__":  # python -m mlrsnet.paper.report.methods_list README.md
    import sys
    from pathlib import Path

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(with_methods(path.read_text()))
