"""Means over seeds with their 95% interval, the way every table of the report states them.

The interval is Student's t: mean +- t(0.975, n - 1) s / sqrt(n), with s the sample standard
deviation over the n seeds; none is given for n = 1. Accuracies are bounded to [0, 1].
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

CONFIDENCE = 0.95
INTERVAL_NOTE = "mean [95% t-interval over seeds] (n = seeds)"


@dataclass
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def seed_band(values: Iterable[float]) -> tuple[float, float]:
    """A figure's error band: the tables' 95% t-interval (seaborn's own "ci" bootstraps, which with
    two or three seeds draws a band far narrower than the interval the tables print); the mean
    alone where there is a single value."""
    estimate = interval(values)
    return (estimate.mean, estimate.mean) if estimate.n < 2 else (estimate.low, estimate.high)


def interval(values: Iterable[float], bounds: tuple[float, float] | None = (0.0, 1.0)) -> Interval:
    """Mean and 95% t-interval of the finite values (NaN interval for fewer than two)."""
    finite = pd.Series(list(values), dtype=float).dropna()
    n = len(finite)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(finite.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    from scipy import stats  # loaded by the first interval, not by importing this module

    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * finite.std(ddof=1) / math.sqrt(n))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, low, high, n)


def describe(values: Iterable[float], digits: int = 3, bounds: tuple[float, float] | None = (0.0, 1.0)) -> str:
    """'0.950 [0.930, 0.970] (n=3)', '0.950 (n=1)', or '—' without a value."""
    result = interval(values, bounds)
    if result.n == 0:
        return "—"
    if result.n == 1:
        return f"{result.mean:.{digits}f} (n=1)"
    return f"{result.mean:.{digits}f} [{result.low:.{digits}f}, {result.high:.{digits}f}] (n={result.n})"
