"""Where the harness finds what plugs into it: methods, task settings, command-line commands.

One registry style for all three, as timm's model registry: each kind has an entry-point
group that installed packages fill, and methods also come from the modules dropped into
``baselines/``.  A name claimed twice is an error naming both places.

``mlrsnet.methods``   :class:`~mlrsnet.harness.contract.Method` subclasses (or modules that
                      define them).  ``baselines/*.py`` are scanned the same way, imported
                      under the namespaced package ``mlrsnet.baselines`` (never as a global
                      ``baselines``), so MLR-SNet's own methods (``baselines/mlrsnet_meta.py``,
                      ``mlrsnet_transfer.py``) are plug-ins like any other.  A plug-in that
                      fails to import is reported, not raised: every other method works.
``mlrsnet.tasks``     mappings ``name -> task setting`` (:class:`~mlrsnet.harness.contract.TaskSetting`);
                      this package registers the paper's twelve (:mod:`mlrsnet.paper.tasks`).
``mlrsnet.commands``  functions ``register(subparsers)`` that add ``mlrsnet-bench`` sub-commands;
                      the paper's apparatus adds ``list``, ``tune``, ``report`` and ``data``.

The harness never imports the paper's modules by name: they arrive through these groups,
so the layers import only downward.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlrsnet.errors import UserError

if TYPE_CHECKING:  # the contract imports torch: not needed to build the command line
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
#: The module name the ``baselines/`` folder is imported under: namespaced inside this
#: package, so a user's own ``baselines`` package (a common folder name, and a package on
#: PyPI) neither hides the built-in methods nor is hidden by them.
BASELINES_PACKAGE = "mlrsnet.baselines"


@dataclass(frozen=True)
class BrokenPlugin:
    """A plug-in module that failed to import: where it is, why, and the method names its
    source declares (read without running it), so asking for one of them says why it is
    missing while every other method works."""

    origin: str
    error: str
    names: tuple[str, ...] = ()

    def message(self) -> str:
        return (f"{self.origin} failed to import ({self.error}), so "
                + (f"its method{'s' if len(self.names) > 1 else ''} "
                   f"{', '.join(map(repr, self.names))} {'are' if len(self.names) > 1 else 'is'} "
                   if self.names else "the methods it defines are ")
                + "not available; fix the file (or move it out of the way) and run the command again.")


def baselines_folder() -> Path:
    """The ``baselines/`` folder of this installation (beside the ``mlrsnet`` package in a
    checkout; installed as :data:`BASELINES_PACKAGE`'s folder in a wheel)."""
    return Path(_baselines_package().__path__[0])


def _baselines_package() -> ModuleType:
    """:data:`BASELINES_PACKAGE`, imported, or made from the ``baselines/`` folder beside the
    ``mlrsnet`` package when the installation does not map it (an older editable install)."""
    try:
        return importlib.import_module(BASELINES_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name != BASELINES_PACKAGE:
            raise
    import mlrsnet

    folder = Path(mlrsnet.__file__).resolve().parent.parent / "baselines"
    spec = importlib.util.spec_from_file_location(BASELINES_PACKAGE, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None or not folder.is_dir():
        raise UserError(f"the built-in methods' folder {folder} is missing: reinstall the package "
                        "(`make install`, or `pip install -e .[bench]`)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[BASELINES_PACKAGE] = module
    spec.loader.exec_module(module)
    mlrsnet.baselines = module  # type: ignore[attr-defined]
    return module


def _method_classes_in(module: Any) -> list[type[Method]]:
    from mlrsnet.harness.contract import Method

    found = []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Method) and obj is not Method and obj.name and obj.__module__ == module.__name__:
            found.append(obj)
    return found


def declared_method_names(path: Path) -> tuple[str, ...]:
    """The ``name = "..."`` literals of the classes in the Python file ``path``, read without
    importing it (for the message about a module that does not import)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return ()
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                target = (stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                          else stmt.target if isinstance(stmt, ast.AnnAssign) else None)
                value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
                if isinstance(target, ast.Name) and target.id == "name" and isinstance(value, ast.Constant) \
                        and isinstance(value.value, str) and value.value:
                    names.append(value.value)
    return tuple(names)


def _error_line(exc: BaseException, file: Path | None = None) -> str:
    """``ErrorType: message at line N``, N the innermost line of ``file`` in the traceback."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        if file is not None and Path(tb.tb_frame.f_code.co_filename) == file:
            where = f" at line {tb.tb_lineno}"
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f" at line {exc.lineno}"
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")


def load_plugin_file(path: str | Path) -> list[type[Method]]:
    """The method classes of the Python file ``path``, imported under a namespaced module name
    (``mlrsnet_plugins.<stem>``): how ``mlrsnet-bench check-method FILE`` and the tests load
    a module that is not in ``baselines/``.  Errors propagate."""
    path = Path(path).resolve()
    name = f"mlrsnet_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return _method_classes_in(module)


#: Further folders of plug-in modules, scanned like ``baselines/`` (``os.pathsep``-separated):
#: keep your methods outside the repository.
PLUGINS_ENV = "MLRSNET_PLUGINS"


def plugin_folders() -> list[Path]:
    """The folders named by ``$MLRSNET_PLUGINS`` (a missing one is an error)."""
    out = []
    for entry in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise UserError(f"${PLUGINS_ENV} names {entry!r}, which is not a folder; set it to the "
                            "folders of your plug-in modules, separated by " + repr(os.pathsep))
        out.append(folder)
    return out


@dataclass
class Discovery:
    """What one scan found: methods by name, and the plug-ins that failed to import."""

    methods: dict[str, type[Method]] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)


def scan() -> Discovery:
    """Every method of ``baselines/``, of the folders in ``$MLRSNET_PLUGINS`` and of the
    ``mlrsnet.methods`` entry points (fresh each
    call, so a newly dropped module appears).  A module that fails to import is recorded in
    :attr:`Discovery.broken`, never raised: the other methods stay available."""
    importlib.invalidate_caches()
    registry, broken = _Registry("method"), []
    package = _baselines_package()
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        file = Path(getattr(info.module_finder, "path", package.__path__[0])) / f"{info.name}.py"
        try:
            module = importlib.import_module(f"{BASELINES_PACKAGE}.{info.name}")
        except Exception as exc:  # a broken plug-in must not take the others down
            broken.append(BrokenPlugin(f"baselines/{info.name}.py", _error_line(exc, file),
                                       declared_method_names(file)))
            continue
        for cls in _method_classes_in(module):
            registry.add(cls.name, cls, f"baselines/{info.name}.py")
    for folder in plugin_folders():
        for file in sorted(folder.glob("*.py")):
            if file.name.startswith("_"):
                continue
            try:
                classes = load_plugin_file(file)
            except Exception as exc:
                broken.append(BrokenPlugin(str(file), _error_line(exc, file), declared_method_names(file)))
                continue
            for cls in classes:
                registry.add(cls.name, cls, str(file))
    for ep in sorted(importlib.metadata.entry_points(group=METHODS_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
        except Exception as exc:
            broken.append(BrokenPlugin(f"entry point {ep.name} ({ep.value})", _error_line(exc), (ep.name,)))
            continue
        for cls in (_method_classes_in(obj) if inspect.ismodule(obj) else [obj]):
            registry.add(cls.name, cls, f"entry point {ep.name} ({ep.value})")
    return Discovery(registry.items, broken)


def discover() -> dict[str, type[Method]]:
    """All available methods by name (fresh each call, so a newly dropped module appears);
    modules that fail to import are left out (:func:`scan` says which)."""
    return scan().methods


def method_origin(cls: type[Method]) -> str:
    """Where a method class is defined, as a user finds it (``baselines/hd.py``)."""
    module = cls.__module__
    if module.startswith(BASELINES_PACKAGE + "."):
        return "baselines/" + module[len(BASELINES_PACKAGE) + 1:].replace(".", "/") + ".py"
    return module


def get_method(name: str) -> type[Method]:
    found = scan()
    if name in found.methods:
        return found.methods[name]
    for bad in found.broken:
        if name in bad.names:
            raise UserError(f"method {name!r} is defined in {bad.message()}")
    close = difflib.get_close_matches(name, found.methods, n=1)
    raise UserError(
        f"unknown method {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; available: "
        f"{', '.join(sorted(found.methods))}. Add one by dropping a module into baselines/ (see README)."
        + "".join(f" Note: {bad.message()}" for bad in found.broken)
    )


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
