"""Where the harness finds what plugs into it: methods, task settings, command-line commands.

One registry style for all three, as timm's model registry: each kind has an entry-point
group that installed packages fill, and methods also come from the modules dropped into
``baselines/``.  A name claimed twice is an error naming both places.

``mlrsnet.methods``   :class:`~mlrsnet.harness.contract.Method` subclasses (or modules that
                      define them).  ``baselines/*.py`` are scanned the same way, so MLR-SNet's
                      own methods (``baselines/mlrsnet_meta.py``, ``mlrsnet_transfer.py``) are
                      plug-ins like any other.
``mlrsnet.tasks``     mappings ``name -> task setting`` (:class:`~mlrsnet.harness.contract.TaskSetting`);
                      this package registers the paper's twelve (:mod:`mlrsnet.paper.tasks`).
``mlrsnet.commands``  functions ``register(subparsers)`` that add ``mlrsnet-bench`` sub-commands;
                      the paper's apparatus adds ``list``, ``tune``, ``report`` and ``data``.

The harness never imports the paper's modules by name: they arrive through these groups,
so the layers import only downward.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import Method, TaskSetting

METHODS_GROUP = "mlrsnet.methods"
TASKS_GROUP = "mlrsnet.tasks"
COMMANDS_GROUP = "mlrsnet.commands"


class _Registry:
    """Name -> object, refusing a second object under a taken name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, Any] = {}
        self.origins: dict[str, str] = {}

    def add(self, name: str, obj: Any, origin: str) -> None:
        if name in self.items and self.items[name] is not obj:
            raise UserError(f"two {self.kind}s are named {name!r}: one in {self.origins[name]}, one in {origin}")
        self.items[name] = obj
        self.origins[name] = origin


def _entry_points(group: str) -> Iterator[tuple[importlib.metadata.EntryPoint, Any]]:
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
        yield ep, ep.load()


# -- methods -------------------------------------------------------------------------------
def _method_classes_in(module: Any) -> list[type[Method]]:
    found = []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Method) and obj is not Method and obj.name and obj.__module__ == module.__name__:
            found.append(obj)
    return found


def _baseline_modules() -> Iterator[Any]:
    import baselines

    for info in sorted(pkgutil.iter_modules(baselines.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        yield importlib.import_module(f"baselines.{info.name}")


def discover() -> dict[str, type[Method]]:
    """All available methods by name (fresh each call, so a newly dropped module appears)."""
    importlib.invalidate_caches()
    registry = _Registry("method")
    for module in _baseline_modules():
        for cls in _method_classes_in(module):
            registry.add(cls.name, cls, module.__name__)
    for ep, obj in _entry_points(METHODS_GROUP):
        for cls in (_method_classes_in(obj) if inspect.ismodule(obj) else [obj]):
            registry.add(cls.name, cls, f"entry point {ep.name} ({ep.value})")
    return registry.items


def get_method(name: str) -> type[Method]:
    registry = discover()
    if name not in registry:
        raise UserError(
            f"unknown method {name!r}; available: {', '.join(sorted(registry))}. "
            "Add one by dropping a module into baselines/ (see README)."
        )
    return registry[name]


# -- task settings -------------------------------------------------------------------------
@functools.cache
def tasks() -> Mapping[str, TaskSetting]:
    """Every registered task setting by name, in registration order (read once per process:
    catalogs are static)."""
    registry = _Registry("task")
    for ep, catalog in _entry_points(TASKS_GROUP):
        for name, task in (catalog() if callable(catalog) else catalog).items():
            registry.add(name, task, f"entry point {ep.name} ({ep.value})")
    if not registry.items:
        raise UserError("no task settings are registered: is the package installed "
                        "(`make install`, or `pip install -e .[bench]`)?")
    return registry.items


def get_task(name: str) -> TaskSetting:
    registry = tasks()
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown task {name!r}.{hint} Tasks: {', '.join(registry)}")
    return registry[name]


def profile_names() -> tuple[str, ...]:
    """Every profile name some task defines, in first-seen order."""
    names: dict[str, None] = {}
    for task in tasks().values():
        names.update(dict.fromkeys(task.profiles))
    return tuple(names)


# -- command-line commands -----------------------------------------------------------------
def command_registrars() -> list[Callable[[Any], None]]:
    """The ``register(subparsers)`` functions of the ``mlrsnet.commands`` group."""
    return [fn for _, fn in _entry_points(COMMANDS_GROUP)]
