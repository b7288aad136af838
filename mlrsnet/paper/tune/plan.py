"""The ``[tune]`` block of an experiment spec, validated into a :class:`TunePlan`.

The block says *what* to search (which method per task kind, which searchers, which
objective) and *how much* (samples per searcher and per profile).  It is validated here,
once, so that a typo fails before Ray starts, with the file and key in the message::

    [tune]
    searchers = ["bayesopt", "bohb"]          # any registered searcher (searchers.SEARCHERS)
    objective = "val"                         # "val" (held-out split) or "test"
    method = { image = "multistep", text = "multistep-val" }
    space = { lr = ["loguniform", 1e-2, 5e-1] }   # optional: replaces the method's entry
    grid = { lr = [0.01, 0.1] }               # optional: grid candidates per hyper-parameter
    transfer_to = ["shufflenetv2-cifar10"]    # optional: apply each searcher's best there

    [tune.profiles.mini]
    samples = 4                               # or { default = 4, grid = 9 }
    bayesopt = { random_search_steps = 2 }    # keyword arguments for that searcher

A profile without an entry tunes with the task profile's ``tune_samples`` and the
searchers' own defaults.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlrsnet.errors import UserError
from mlrsnet.harness.experiment import check_keys
from mlrsnet.paper.tasks import PROFILES, TASKS
from mlrsnet.paper.tune.searchers import SEARCHERS, TITLES

OBJECTIVES = ("val", "test")
KINDS = ("image", "text")
#: The paper's method per task kind: MultiStep at fixed epochs for images, the "Val"
#: strategy (decay on a validation plateau) for language models.
DEFAULT_METHODS = {"image": "multistep", "text": "multistep-val"}
DEFAULT_SEARCHERS = ("bayesopt", "bohb")
#: Searcher titles by name, read live from the registry (the reports import them from here).
SEARCHER_TITLES = TITLES

TUNE_KEYS = {"searchers", "objective", "method", "space", "grid", "transfer_to", "profiles"}
SPACE_KINDS = ("loguniform", "uniform")


@dataclass(frozen=True)
class TunePlan:
    searchers: tuple[str, ...]
    objective: str
    methods: Mapping[str, str]
    space: Mapping[str, tuple[str, float, float]] = field(default_factory=dict)
    grid: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    transfer_to: tuple[str, ...] = ()
    #: profile -> {"default"/searcher: samples}
    samples: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: profile -> searcher -> keyword arguments
    options: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def method_for(self, kind: str) -> str:
        return self.methods[kind]

    def samples_for(self, profile: str, searcher: str, fallback: int) -> int:
        """Trials for one searcher at one profile; ``fallback`` is the task profile's
        ``tune_samples`` (used when the spec does not say)."""
        table = self.samples.get(profile, {})
        return int(table.get(searcher, table.get("default", fallback)))

    def options_for(self, profile: str, searcher: str) -> dict[str, Any]:
        return dict(self.options.get(profile, {}).get(searcher, {}))

    def seed_for(self, profile: str, searcher: str) -> int | None:
        """The seed the searcher runs with: the spec's, else the library's default."""
        key = SEARCHERS[searcher].seed_option
        opts = self.options_for(profile, searcher)
        if key is not None and key in opts:
            return opts[key]
        return SEARCHERS[searcher].default_seed


def _fail(source: str, key: str, problem: str) -> UserError:
    return UserError(f"{source}: key {key!r}: {problem}")


def _names(value: Any, source: str, key: str, allowed: Collection[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(source, key, f"must be a non-empty list; allowed: {', '.join(allowed)}")
    for v in value:
        if v not in allowed:
            raise _fail(source, key, f"{v!r} is not allowed; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(value))


def _parse_methods(value: Any, source: str) -> dict[str, str]:
    from mlrsnet.harness.registry import discover

    registry = discover()
    if value is None:
        methods = dict(DEFAULT_METHODS)
    elif isinstance(value, str):
        methods = dict.fromkeys(KINDS, value)
    elif isinstance(value, dict):
        bad = sorted(set(value) - set(KINDS))
        if bad:
            raise _fail(source, f"tune.method.{bad[0]}", f"not a task kind; allowed: {', '.join(KINDS)}")
        methods = {**DEFAULT_METHODS, **value}
    else:
        raise _fail(source, "tune.method", "must be a method name or { image = ..., text = ... }")
    for kind, name in methods.items():
        if name not in registry:
            raise _fail(source, f"tune.method.{kind}",
                        f"{name!r} is not a method; allowed: {', '.join(sorted(registry))}")
        if not registry[name].space(kind):
            raise _fail(source, f"tune.method.{kind}",
                        f"method {name!r} declares no search space; pick a tunable method")
    return methods


def _parse_space(value: Any, source: str) -> dict[str, tuple[str, float, float]]:
    if not isinstance(value, dict):
        raise _fail(source, "tune.space", 'must be a table, e.g. { lr = ["loguniform", 1e-2, 0.5] }')
    out = {}
    for name, dim in value.items():
        key = f"tune.space.{name}"
        if (not isinstance(dim, list) or len(dim) != 3 or dim[0] not in SPACE_KINDS
                or not all(isinstance(x, int | float) for x in dim[1:])):
            raise _fail(source, key, f'must be [KIND, low, high] with KIND one of {", ".join(SPACE_KINDS)}')
        lo, hi = float(dim[1]), float(dim[2])
        if not lo < hi or (dim[0] == "loguniform" and lo <= 0):
            raise _fail(source, key, "needs 0 < low < high (low > 0 for loguniform)")
        out[name] = (dim[0], lo, hi)
    return out


def _parse_grid(value: Any, source: str) -> dict[str, tuple[float, ...]]:
    if not isinstance(value, dict):
        raise _fail(source, "tune.grid", "must be a table of candidate lists, e.g. { lr = [0.01, 0.1] }")
    out = {}
    for name, values in value.items():
        if (not isinstance(values, list) or not values
                or not all(isinstance(x, int | float) for x in values)):
            raise _fail(source, f"tune.grid.{name}", "must be a non-empty list of numbers")
        out[name] = tuple(float(x) for x in values)
    return out


def _parse_samples(value: Any, source: str, key: str) -> dict[str, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"default": value}
    if not isinstance(value, dict):
        raise _fail(source, key, "must be an integer or { default = N, grid = M, ... }")
    out = {}
    for name, n in value.items():
        if name != "default" and name not in SEARCHERS:
            raise _fail(source, f"{key}.{name}", f"allowed: default, {', '.join(SEARCHERS)}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _fail(source, f"{key}.{name}", "must be a positive integer")
        out[name] = n
    return out


def _parse_profiles(value: Any, source: str) -> tuple[dict, dict]:
    if not isinstance(value, dict):
        raise _fail(source, "tune.profiles", f"must be a table keyed by profile ({', '.join(PROFILES)})")
    samples: dict[str, dict[str, int]] = {}
    options: dict[str, dict[str, dict[str, Any]]] = {}
    for prof, table in value.items():
        where = f"tune.profiles.{prof}"
        if prof not in PROFILES:
            raise _fail(source, where, f"not a profile; allowed: {', '.join(PROFILES)}")
        if not isinstance(table, dict):
            raise _fail(source, where, "must be a table")
        check_keys(table, {"samples", *SEARCHERS}, source, where)
        if "samples" in table:
            samples[prof] = _parse_samples(table["samples"], source, f"{where}.samples")
        for searcher in SEARCHERS:
            if searcher not in table:
                continue
            opts = table[searcher]
            if not isinstance(opts, dict):
                raise _fail(source, f"{where}.{searcher}", "must be a table of keyword arguments")
            unknown = sorted(set(opts) - SEARCHERS[searcher].options)
            if unknown:
                allowed = ", ".join(sorted(SEARCHERS[searcher].options)) or "(none)"
                raise _fail(source, f"{where}.{searcher}.{unknown[0]}", f"unknown option; allowed: {allowed}")
            options.setdefault(prof, {})[searcher] = dict(opts)
    return samples, options


def parse_tune_block(block: Mapping[str, Any] | None, source: str = "<spec>") -> TunePlan:
    """Validate a spec's ``[tune]`` table (``source`` names the file in messages)."""
    if block is None:
        raise UserError(f"{source}: has no [tune] block; `mlrsnet-bench tune` needs one "
                        "(see benchmarks/table1.toml)")
    check_keys(block, TUNE_KEYS, source, "tune")
    searchers = _names(block.get("searchers", list(DEFAULT_SEARCHERS)), source, "tune.searchers", SEARCHERS)
    objective = block.get("objective", "val")
    if objective not in OBJECTIVES:
        raise _fail(source, "tune.objective", f"{objective!r}; allowed: {', '.join(OBJECTIVES)}")
    transfer = block.get("transfer_to", [])
    if transfer:
        transfer = _names(transfer, source, "tune.transfer_to", tuple(TASKS))
    samples, options = _parse_profiles(block.get("profiles", {}), source)
    methods = _parse_methods(block.get("method"), source)
    space = _parse_space(block.get("space", {}), source)
    grid = _parse_grid(block.get("grid", {}), source)
    _check_values(methods, space, grid, source)
    return TunePlan(
        searchers=searchers, objective=objective, methods=methods,
        space=space, grid=grid, transfer_to=tuple(transfer), samples=samples, options=options,
    )


def _check_values(methods: Mapping[str, str], space: Mapping[str, tuple[str, float, float]],
                  grid: Mapping[str, tuple[float, ...]], source: str) -> None:
    """Every searched hyper-parameter is one the plan's methods take, and every value a
    search can draw (a range's ends, each grid candidate) passes the methods' own check
    (:meth:`~mlrsnet.harness.contract.Method.check_hparams`, as a trial would)."""
    from mlrsnet.harness.registry import discover

    registry = discover()
    classes = [registry[name] for name in dict.fromkeys(methods.values())]
    for table, values in (("space", {k: v[1:] for k, v in space.items()}), ("grid", grid)):
        for hp, candidates in values.items():
            key = f"tune.{table}.{hp}"
            takers = [cls for cls in classes if hp in cls.defaults]
            if not takers:
                try:
                    classes[0].check_names({hp: None})
                except UserError as exc:
                    raise _fail(source, key, str(exc)) from None
            for cls in takers:
                for value in candidates:
                    try:
                        cls.check_hparams({hp: value})
                    except UserError as exc:
                        raise _fail(source, key, str(exc)) from None


def with_cli_overrides(plan: TunePlan, *, searchers: str | None = None, objective: str | None = None,
                       source: str = "command line") -> TunePlan:
    """The plan with ``--searchers`` / ``--objective`` applied."""
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if searchers:
        changes["searchers"] = _names(searchers, source, "--searchers", SEARCHERS)
    if objective:
        if objective not in OBJECTIVES:
            raise _fail(source, "--objective", f"{objective!r}; allowed: {', '.join(OBJECTIVES)}")
        changes["objective"] = objective
    return replace(plan, **changes)
