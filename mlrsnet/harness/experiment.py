"""Experiment specs (``benchmarks/*.toml``) and their expansion into cells.

A *cell* is one training run: (task, profile, method, method hyper-parameters, seed), plus
optional profile overrides (e.g. the held-out size of the RTHO sweep) and tags (e.g. the
search a trial belongs to).  Its ``run_id`` is a stable hash of all of that, so the store
can tell a finished cell from a new one across restarts and machines.

Spec format::

    name = "demo"                     # experiment name (results/<name>/)
    profile = "mini"                  # smoke | mini | cpu | paper
    seeds = [0]
    tasks = ["resnet18-cifar10"]

    [[methods]]
    name = "multistep"                # any name from `mlrsnet-bench list methods`
    label = "MultiStep"               # optional, for plots
    hparams = { lr = 0.1, decay = 0.1 }

    [[methods]]                       # the best configuration a search found, trained again
    label = "MultiStep (BayesOpt)"    # (the paper tuned first, then trained: the figures)
    tuned = { experiment = "table1", search = "bayesopt" }   # optional: task, profile

    [overrides]                       # optional profile fields, e.g. holdout = 2000
    # or a sweep, one set of cells per entry:  overrides = [{holdout = 1000}, {holdout = 2000}]

    [overrides_by_profile]            # optional: other overrides (or sweeps) at some profiles,
    cpu = [{holdout = 100}, {holdout = 200}]   # replacing `overrides` there (one definition)

    [tune]                            # optional tuning block, see mlrsnet.paper.tune
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness.contract import HParamError, profile_holdout
from mlrsnet.harness.registry import get_method, get_task, profile_names, tasks

#: Profile fields that describe rather than configure (never overridden): prose, and the
#: device and data policies of a scale.
NOT_OVERRIDABLE = ("notes", "expects_gpu", "requires_data")
#: Seeds are 32-bit: the range every generator a run or a search seeds takes (torch's, with
#: ``seed + 1`` and ``seed + 2`` for the held-out and training-pass draws, numpy's, Ray
#: Tune's searchers).  ``--seed 2**64-1`` overflowed inside the run before this bound.
MAX_SEED = 2 ** 32 - 1
#: The most seeds one invocation expands (``--seeds 0-99999999999`` ran out of memory).
MAX_SEEDS = 10_000


def seed_problem(seed: object) -> str | None:
    """Why ``seed`` is not a usable seed (None if it is)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        return f"must be an integer >= 0 and at most {MAX_SEED} (32 bits), not {seed!r}"
    return None


def overridable(task: str, profile: str) -> tuple[str, ...]:
    """The fields of ``task``'s ``profile`` that a spec or ``--override`` may set."""
    return tuple(f.name for f in fields(get_task(task).profile(profile)) if f.name not in NOT_OVERRIDABLE)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             dict: "a table", list: "a list", tuple: "a list"}
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return names.get(origin, getattr(origin, "__name__", str(origin)))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as TOML or JSON gives it) has the annotated type ``hint``."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if origin in (tuple, list):
        return isinstance(value, list | tuple)
    return isinstance(value, origin) if isinstance(origin, type) else True


def override_problem(profile: Any, name: str, value: Any) -> str | None:
    """Why ``value`` cannot be profile field ``name`` (its annotated type and, from the field's
    metadata, its smallest value ``min``), or None if it can."""
    hints = typing.get_type_hints(type(profile))
    spec = {f.name: f for f in fields(profile)}.get(name)
    if spec is None:
        return None
    hint = hints.get(name, Any)
    if not _matches(value, hint):
        return f"must be {_type_name(hint)}, not {value!r}"
    choices = spec.metadata.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(repr, choices))}, not {value!r}"
    low = spec.metadata.get("min")
    if low is not None and value is not None and not isinstance(value, bool) \
            and isinstance(value, int | float) and value < low:
        return f"must be {_type_name(hint).split(' or ')[0]} >= {low}, not {value!r}"
    return None


def check_overrides(task: str, profile: str, overrides: Mapping[str, Any]) -> None:
    """Refuse override fields ``task``'s ``profile`` does not have or values of the wrong
    type or range; the message names the field (the spec and ``--override`` add where)."""
    allowed = overridable(task, profile)
    base = get_task(task).profile(profile)
    for key in overrides:
        if key not in allowed:
            raise OverrideError(f"{key!r} is not a profile field; allowed: {', '.join(allowed)}", key)
        problem = override_problem(base, key, overrides[key])
        if problem:
            raise OverrideError(f"profile field {key!r} {problem}", key)


class OverrideError(UserError):
    """A profile override that does not validate; ``name`` is the field."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Cell:
    task: str
    profile: str
    method: str
    hparams: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    experiment: str = "adhoc"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def run_id(self) -> str:
        key = {
            "task": self.task, "profile": self.profile, "method": self.method,
            "hparams": dict(self.hparams), "seed": self.seed,
            "overrides": dict(self.overrides), "tags": dict(self.tags),
        }
        blob = json.dumps(key, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_(self, **changes: Any) -> Cell:
        return replace(self, **changes)


@dataclass(frozen=True)
class MethodEntry:
    name: str
    hparams: Mapping[str, Any]
    label: str
    #: Where the hyper-parameters come from: the best trial of a search (``experiment``,
    #: ``search``, optional ``task`` (default: each cell's own) and ``profile`` (default: the
    #: search profile of the reproduction)).  Resolved against the store by
    #: :func:`mlrsnet.paper.tune.tuned.resolve_tuned`; ``name`` may then be empty (the
    #: method the search tuned).
    tuned: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    profile: str
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    methods: tuple[MethodEntry, ...]
    overrides: Mapping[str, Any]
    tune: Mapping[str, Any] | None
    #: Several override sets (a sweep); when given, ``overrides`` is the first of them.
    override_sweep: tuple[Mapping[str, Any], ...] = ()
    source: Path | None = None
    description: str = ""
    #: What a report says about the experiment (``[report]``: e.g. the paper's figure, its
    #: claim, the paper's numbers); carried as given, read by the report layer.
    report: Mapping[str, Any] | None = None

    @property
    def takes_tuned(self) -> bool:
        """Whether some method takes its hyper-parameters from a search (``tuned``)."""
        return any(m.tuned for m in self.methods)

    def cells(self) -> list[Cell]:
        """One cell per (override set, task, method, seed).  A ``tuned`` method's cells carry
        the reference in ``tags["tuned"]`` and its fixed ``hparams`` only, until
        :func:`mlrsnet.paper.tune.tuned.resolve_tuned` fills in the search's best."""
        sweep = self.override_sweep or (self.overrides,)
        return [
            Cell(task=t, profile=self.profile, method=m.name, hparams=dict(m.hparams), seed=s,
                 experiment=self.name, overrides=dict(o), label=m.label,
                 tags={"tuned": dict(m.tuned)} if m.tuned else {})
            for o in sweep for t in self.tasks for m in self.methods for s in self.seeds
        ]


def experiment_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name an experiment (its folder under ``--results``), or None.

    A name must be one safe path component: ``..``, ``a/b`` or ``.hidden`` would write
    outside (or hidden inside) the results folder."""
    from mlrsnet.harness.store import check_component

    if not isinstance(name, str):
        return "must be a string (a single folder name)"
    return check_component(name)


class SpecError(UserError):
    """A spec that does not validate; the message names the file and the key."""


def _fail(source: str, key: str, problem: str) -> SpecError:
    return SpecError(f"{source}: key {key!r}: {problem}")


def check_keys(table: Mapping[str, Any], allowed: Collection[str], source: str, where: str = "") -> None:
    """Refuse the first key of ``table`` that is not ``allowed``, naming the file, the key
    (under ``where``) and the keys allowed (a spec, a ``[tune]`` block, a reproduction plan)."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise _fail(str(source), key, f"unknown key; allowed: {', '.join(sorted(allowed))}")


TOP_KEYS = {"name", "description", "profile", "seeds", "tasks", "methods", "overrides", "overrides_by_profile",
            "tune", "report"}
METHOD_KEYS = {"name", "hparams", "label", "tuned"}


def parse_spec(data: Mapping[str, Any], source: str = "<spec>", *,
               profile: str | None = None, seeds: list[int] | None = None) -> ExperimentSpec:
    """Validate a loaded TOML mapping; ``profile``/``seeds`` override the file's values."""
    from mlrsnet.harness.registry import discover

    check_keys(data, TOP_KEYS, source)
    name = data.get("name") or (Path(source).stem if source != "<spec>" else "")
    problem = experiment_name_problem(name)
    if problem:
        raise _fail(source, "name", problem)
    prof = profile or data.get("profile", "mini")
    if prof not in profile_names():
        raise _fail(source, "profile", f"{prof!r} is not a profile; allowed: {', '.join(profile_names())}")
    seed_list = seeds if seeds is not None else data.get("seeds", [0])
    if (not isinstance(seed_list, list) or not seed_list or len(seed_list) > MAX_SEEDS
            or any(seed_problem(s) for s in seed_list)):
        shown = seed_list if not isinstance(seed_list, list) or len(seed_list) <= 8 else f"{seed_list[:8]}..."
        raise _fail(source, "seeds", f"must be a non-empty list of integers from 0 to {MAX_SEED} (at most "
                    f"{MAX_SEEDS} of them), e.g. [0, 1, 2], not {shown!r}")
    task_names = data.get("tasks")
    if not isinstance(task_names, list) or not task_names or not all(isinstance(t, str) for t in task_names):
        raise _fail(source, "tasks", f"must be a non-empty list of task names; allowed: {', '.join(tasks())}")
    for t in task_names:
        if t not in tasks():
            raise _fail(source, "tasks", f"{t!r} is not a task; allowed: {', '.join(tasks())}")
    registry = discover()
    raw_methods = data.get("methods", [])
    tune = data.get("tune")
    if not isinstance(raw_methods, list) or (not raw_methods and tune is None):
        raise _fail(source, "methods", "must be a non-empty list of [[methods]] tables")
    methods = []
    for i, m in enumerate(raw_methods):
        where = f"methods[{i}]"
        if not isinstance(m, dict) or ("name" not in m and "tuned" not in m):
            raise _fail(source, where, "each [[methods]] table needs a 'name' (or a 'tuned' reference)")
        check_keys(m, METHOD_KEYS, source, where)
        tuned = _tuned_reference(m.get("tuned"), source, where) if "tuned" in m else None
        method = m.get("name", "")
        if (method or not tuned) and method not in registry:
            raise _fail(source, f"{where}.name",
                        f"{method!r} is not a method; allowed: {', '.join(sorted(registry))}")
        hp = m.get("hparams", {})
        if not isinstance(hp, dict):
            raise _fail(source, f"{where}.hparams", "must be a table, e.g. { lr = 0.1 }")
        if method:
            try:
                registry[method].check_hparams(hp)
            except HParamError as exc:
                raise _fail(source, f"{where}.hparams.{exc.name}", str(exc)) from None
        default_label = method or f"{tuned['search']} best ({tuned['experiment']})"
        entry = MethodEntry(method, hp, str(m.get("label", default_label)), tuned)
        for j, other in enumerate(methods):
            if _same_runs(entry, other):
                raise _fail(source, where, f"trains the same runs as methods[{j}] (the label is not part "
                            f"of a run's identity): labels {other.label!r} and {entry.label!r} would name "
                            "one run; remove one entry, or give them different hyper-parameters")
        methods.append(entry)
    by_profile = data.get("overrides_by_profile", {})
    if not isinstance(by_profile, dict) or any(p not in profile_names() for p in by_profile):
        raise _fail(source, "overrides_by_profile", "must map a profile name to its overrides (a table or a list of "
                    f"tables); profiles: {', '.join(profile_names())}")
    key = f"overrides_by_profile.{prof}" if prof in by_profile else "overrides"
    raw_overrides = by_profile.get(prof, data.get("overrides", {}))
    sweep = raw_overrides if isinstance(raw_overrides, list) else [raw_overrides]
    if not sweep or not all(isinstance(o, dict) for o in sweep):
        raise _fail(source, key, "must be a table of profile fields or a non-empty list of them")
    for o in sweep:
        for t in dict.fromkeys(task_names):
            try:
                check_overrides(t, prof, o)
            except OverrideError as exc:
                raise _fail(source, f"{key}.{exc.name}", str(exc)) from None
    overrides = sweep[0]
    if tune is not None and not isinstance(tune, dict):
        raise _fail(source, "tune", "must be a table")
    report = data.get("report")
    if report is not None and not isinstance(report, dict):
        raise _fail(source, "report", "must be a table")
    return ExperimentSpec(
        name=name, profile=prof, seeds=tuple(seed_list), tasks=tuple(task_names),
        methods=tuple(methods), overrides=overrides, tune=tune,
        override_sweep=tuple(sweep) if isinstance(raw_overrides, list) else (),
        source=Path(source) if source != "<spec>" else None,
        description=str(data.get("description", "")), report=report,
    )


def task_facts(names: Collection[str], profile: str, data_dir: str | None = None) -> dict[str, dict[str, Any]]:
    """Per task, the reference values a report draws beside its curves (chance accuracy,
    the corpus's unigram perplexity at the profile's vocabulary), from the task's optional
    ``references(profile, data_dir)`` (the paper's tasks have one); tasks without it give
    nothing."""
    out = {}
    for name in dict.fromkeys(names):
        refs = getattr(get_task(name), "references", None)
        out[name] = dict(refs(profile, data_dir)) if callable(refs) else {}
    return out


def spec_record(spec: ExperimentSpec) -> dict[str, Any]:
    """The resolved spec as stored beside its results (``<experiment>/spec.json``): what a
    report needs to draw the experiment from the store alone: the methods in the spec's
    order with their labels (a legend's order), the tasks, seeds, profile, the override
    sweep, the tuning block and the ``[report]`` table, as this invocation resolved them."""
    return {
        "name": spec.name, "description": spec.description, "profile": spec.profile,
        "seeds": list(spec.seeds), "tasks": list(spec.tasks),
        "methods": [{"name": m.name, "label": m.label, "hparams": dict(m.hparams),
                     **({"tuned": dict(m.tuned)} if m.tuned else {})} for m in spec.methods],
        "overrides": dict(spec.overrides),
        "sweep": [dict(o) for o in spec.override_sweep],
        "tune": dict(spec.tune) if spec.tune is not None else None,
        "report": dict(spec.report) if spec.report is not None else None,
        # the file's folder and name (benchmarks/fig1.toml), not where this checkout is
        "source": f"{spec.source.parent.name}/{spec.source.name}" if spec.source is not None else None,
    }


def _same_runs(a: MethodEntry, b: MethodEntry) -> bool:
    """Whether two [[methods]] entries expand to the same cells (label aside)."""
    def key(m: MethodEntry) -> str:
        return json.dumps([m.name, dict(m.hparams), dict(m.tuned or {})], sort_keys=True, default=str)

    return key(a) == key(b)


TUNED_KEYS = {"experiment", "search", "task", "profile"}


def _tuned_reference(value: Any, source: str, where: str) -> dict[str, Any]:
    """A validated ``tuned = { experiment, search[, task][, profile] }`` table."""
    key = f"{where}.tuned"
    if not isinstance(value, dict):
        raise _fail(source, key, 'must be a table, e.g. { experiment = "table1", search = "bayesopt" }')
    check_keys(value, TUNED_KEYS, source, key)
    for need in ("experiment", "search"):
        if need not in value:
            raise _fail(source, key, f"needs {need!r} (the search's experiment and searcher)")
    problem = experiment_name_problem(value["experiment"])
    if problem:
        raise _fail(source, f"{key}.experiment", problem)
    if not isinstance(value["search"], str) or not value["search"]:
        raise _fail(source, f"{key}.search", "must be a searcher name, e.g. \"bayesopt\"")
    if "task" in value and value["task"] not in tasks():
        raise _fail(source, f"{key}.task", f"{value['task']!r} is not a task; allowed: {', '.join(tasks())}")
    if "profile" in value and value["profile"] not in profile_names():
        raise _fail(source, f"{key}.profile",
                    f"{value['profile']!r} is not a profile; allowed: {', '.join(profile_names())}")
    return dict(value)


def load_spec(path: str | Path, *, profile: str | None = None,
              seeds: list[int] | None = None) -> ExperimentSpec:
    p = Path(path)
    if not p.exists():
        raise SpecError(f"experiment spec {str(p)!r} does not exist")
    if p.is_dir():
        raise SpecError(f"experiment spec {str(p)!r} is a folder; give the .toml file "
                        f"(e.g. benchmarks/demo.toml)")
    try:
        data = tomllib.loads(p.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read experiment spec {str(p)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                        "save the spec as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: not valid TOML: {exc}") from None
    return parse_spec(data, str(p), profile=profile, seeds=seeds)


def resolved_profile(cell: Cell, method: type | None = None) -> Any:
    """The profile the cell trains at: its overrides applied, then the held-out rule.

    A method that reads no held-out data (``Method.uses_held_out`` false: the hand-designed
    schedules, HD, L4, transferred MLR-SNet) trains on the whole training split, ``holdout``
    0, as the authors' scripts train them on all 50,000 CIFAR images; an explicit
    ``holdout`` override keeps the split (a search whose objective is the held-out metric
    sets one, :mod:`mlrsnet.paper.tune.command`).  The run records the held-out size it
    used in ``runs.method_info["sizes"]["val"]``.
    """
    base = get_task(cell.task).profile(cell.profile)
    check_overrides(cell.task, cell.profile, cell.overrides)
    try:
        profile = replace(base, **dict(cell.overrides))
    except TypeError as exc:
        raise UserError(f"bad profile override {dict(cell.overrides)}: {exc}") from None
    method = method if method is not None else get_method(cell.method)
    if "holdout" not in cell.overrides and profile_holdout(profile) and not method.uses_held_out:
        profile = replace(profile, holdout=0)
    return profile
