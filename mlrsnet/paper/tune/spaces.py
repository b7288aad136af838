"""Search spaces: a method's declared dimensions turned into what each searcher accepts.

Each searcher says in its registry entry (:attr:`~mlrsnet.paper.tune.searchers.Searcher.space`)
which encoding it takes.  The paper samples alpha0 and gamma_M log-uniformly.  Random
search and BOHB take ``tune.loguniform`` directly (``native``).  BayesOptSearch only
understands bounded *uniform* ranges: handed the paper's space as is (``native``, its
default here, as the paper ran it) it drops the log-uniform sampler and searches the bounds
uniformly.  With ``bayesopt_space = "log10"`` (``log10``) each log-uniform dimension is
searched as ``log10(value)`` uniform on ``[log10(low), log10(high)]`` and turned back into
the value in the trial (:func:`decode`): the Gaussian process then models the objective over
the log scale the paper says it intends.  Grid
search (``grid``) runs the paper's 14 candidates per dimension; a budget below the full grid
takes a centred sub-grid (:func:`grid_subset`), the same for every run, so small profiles
still spread over the range instead of taking its first corner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlrsnet.errors import UserError

LOG_PREFIX = "log10_"


#: The paper's grid-search candidates for both alpha0 and gamma_M (supplement Sec. 5).
PAPER_GRID = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.2, 0.3, 0.4, 0.5]


def _paper_grid() -> tuple[float, ...]:
    return tuple(PAPER_GRID)


def resolve_space(declared: Mapping[str, tuple], overrides: Mapping[str, tuple],
                  hparam_names: Sequence[str]) -> dict[str, tuple]:
    """The method's declared dimensions with the spec's ``tune.space`` entries applied."""
    bad = sorted(set(overrides) - set(hparam_names))
    if bad:
        raise UserError(f"tune.space.{bad[0]}: the method has no such hyper-parameter; "
                        f"it takes: {', '.join(sorted(hparam_names))}")
    space = {**dict(declared), **dict(overrides)}
    for name, dim in space.items():
        if dim[0] not in ("loguniform", "uniform", "choice", "grid"):
            raise UserError(f"search dimension {name!r}: unknown kind {dim[0]!r}")
    return space


def ray_space(space: Mapping[str, tuple], searcher: str, *, budget: int,
              grid: Mapping[str, Sequence[float]] | None = None,
              options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``param_space`` for ``Tuner`` for one searcher, in the encoding the searcher
    takes with ``options`` (:meth:`~mlrsnet.paper.tune.searchers.Searcher.encoding`)."""
    from ray import tune

    from mlrsnet.paper.tune.searchers import get_searcher

    entry = get_searcher(searcher)
    encoding = entry.encoding(options)
    if encoding == "grid":
        values = grid_subset(grid_candidates(space, grid or {}), budget)
        return {name: tune.grid_search(list(v)) for name, v in values.items()}
    out: dict[str, Any] = {}
    for name, dim in space.items():
        kind = dim[0]
        if kind in ("choice", "grid"):
            if entry.continuous_only:
                raise UserError(f"{entry.title} searches continuous ranges only; {name!r} is a {kind}")
            out[name] = tune.choice(list(dim[1]))
        elif encoding == "log10" and kind == "loguniform":
            out[LOG_PREFIX + name] = tune.uniform(math.log10(dim[1]), math.log10(dim[2]))
        elif kind == "loguniform":
            out[name] = tune.loguniform(dim[1], dim[2])
        else:
            out[name] = tune.uniform(dim[1], dim[2])
    return out


def decode(config: Mapping[str, Any], space: Mapping[str, tuple]) -> dict[str, Any]:
    """The method's hyper-parameters from a trial's config (undoing the log10 encoding)."""
    out: dict[str, Any] = {}
    for name in space:
        if LOG_PREFIX + name in config:
            out[name] = float(10.0 ** float(config[LOG_PREFIX + name]))
        else:
            value = config[name]
            out[name] = float(value) if isinstance(value, int | float) else value
    return out


def grid_candidates(space: Mapping[str, tuple], grid: Mapping[str, Sequence[float]]) -> dict[str, tuple]:
    """Candidates per dimension: the spec's ``tune.grid``, a choice's values, or the paper's
    14 values inside the dimension's range."""
    out = {}
    for name, dim in space.items():
        if name in grid:
            out[name] = tuple(grid[name])
        elif dim[0] in ("choice", "grid"):
            out[name] = tuple(dim[1])
        else:
            inside = tuple(v for v in _paper_grid() if dim[1] <= v <= dim[2])
            if not inside:
                raise UserError(f"no paper grid value lies in {name!r}'s range [{dim[1]}, {dim[2]}]; "
                                f"give candidates in tune.grid.{name}")
            out[name] = inside
    return out


def grid_shape(sizes: Sequence[int], budget: int) -> list[int]:
    """Points per dimension of the largest sub-grid with at most ``budget`` points: equal
    counts where possible, the earlier dimensions taking the remainder."""
    counts = [1] * len(sizes)
    grew = True
    while grew:
        grew = False
        for i, size in enumerate(sizes):
            if counts[i] < size and math.prod(counts) // counts[i] * (counts[i] + 1) <= budget:
                counts[i] += 1
                grew = True
    return counts


def centred_pick(values: Sequence[Any], k: int) -> list[Any]:
    """``k`` of ``values``, one from the middle of each of ``k`` equal slices of the list."""
    n = len(values)
    if k >= n:
        return list(values)
    return [values[int(math.floor((i + 0.5) * n / k))] for i in range(k)]


def grid_subset(candidates: Mapping[str, Sequence[float]], budget: int) -> dict[str, list]:
    """The full grid if ``budget`` covers it, else the centred sub-grid of :func:`grid_shape`."""
    names = list(candidates)
    counts = grid_shape([len(candidates[n]) for n in names], budget)
    return {n: centred_pick(list(candidates[n]), k) for n, k in zip(names, counts, strict=True)}


def grid_size(candidates: Mapping[str, Sequence[float]]) -> int:
    return math.prod(len(v) for v in candidates.values())
