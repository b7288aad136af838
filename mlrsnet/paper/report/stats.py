"""The spread over seeds that every figure and table of a report states.

- 1 seed: no spread (the value itself);
- 2 seeds: the range, min to max (a confidence interval from two values means nothing);
- 3 or more seeds: a 95 % confidence interval of the mean by the percentile bootstrap
  (Efron & Tibshirani 1993, ch. 13): :data:`RESAMPLES` resamples of the seeds with
  replacement, the 2.5th and 97.5th percentiles of their means.  The resampling draws from
  a generator seeded with :data:`SEED`, so a report renders to the same bytes every time.

A seed whose value is not finite (a diverged run) makes the spread not finite: a diverged
seed is reported as such, never averaged away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    lo: float
    hi: float
    #: "one seed" | "min-max" | "95% bootstrap CI"
    kind: str

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.mean, self.lo, self.hi))


def kind_of(n: int) -> str:
    """What the spread of ``n`` seeds is, in words."""
    if n <= 1:
        return "one seed"
    if n == 2:
        return "min-max"
    return f"{CONFIDENCE:.0%} bootstrap CI"


def spread(values: Iterable[float]) -> Spread:
    """Mean and spread of the values of the seeds (see the module docstring)."""
    v = np.asarray([float(x) for x in values], dtype=float)
    n = len(v)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, "no seed")
    kind = kind_of(n)
    if not np.isfinite(v).all():
        return Spread(n, math.nan, math.nan, math.nan, kind)
    mean = float(v.mean())
    if n == 1:
        return Spread(1, mean, mean, mean, kind)
    if n == 2:
        return Spread(2, mean, float(v.min()), float(v.max()), kind)
    rng = np.random.default_rng(SEED)
    means = v[rng.integers(0, n, size=(RESAMPLES, n))].mean(axis=1)
    tail = (1.0 - CONFIDENCE) / 2
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return Spread(n, mean, float(lo), float(hi), kind)


def band_words(ns: Iterable[int]) -> str:
    """What the bands of lines with these seed counts show, e.g. "n = 2 seeds; band: min-max"."""
    counts = sorted({int(n) for n in ns if n})
    if not counts:
        return "no seed"
    kinds = sorted({kind_of(n) for n in counts if n > 1})
    seeds = ", ".join(map(str, counts))
    word = "seed" if counts == [1] else "seeds"
    return f"n = {seeds} {word}" + (f"; band: {' / '.join(kinds)}" if kinds else ", no band")
