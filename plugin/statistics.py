"""Means over seeds with their 95% interval, and the one statistical rule every comparison of the
report follows.

The interval is Student's t: mean +- t(0.975, n - 1) s / sqrt(n), with s the sample standard
deviation over the n seeds; none is given for n = 1. Accuracies are bounded to [0, 1]: the ends of
an interval are clipped to the bounds, its mean never is (a mean outside them is an error upstream).

The rule, paired where the data are paired:
- two settings whose seeds share data (seed i of one saw the same data as seed i of the other)
  are compared by a paired t-test on the per-seed differences; settings whose seeds share nothing
  by Student's pooled two-sample t-test; both two-sided, resolved at p < ALPHA = 0.05;
- an unresolved difference states the seeds that would resolve it: the smallest n at which the
  same test has 80% power at the observed standardized effect, computed exactly from the test's
  noncentral t distribution (paired: df n - 1, noncentrality d sqrt(n); pooled: n per setting,
  df 2n - 2, noncentrality d sqrt(n / 2));
- a run beats chance when the one-sided exact binomial test of its correct answers against its
  chance level says so (above_chance).
scipy is imported by the functions that use it, not by importing this module.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
ALPHA = 0.05  # a comparison is resolved at p < ALPHA
POWER = 0.8  # the power at which seeds_needed counts the seeds that would resolve a difference
MAX_SEEDS = 1000  # seeds_needed says None beyond this
ROUNDING = 1e-9  # how far past its bounds a mean may lie by float rounding alone
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
    alone where there is a single value. Unbounded: a figure draws any value, accuracy or a signed
    score, and its axis shows the range."""
    estimate = interval(values, bounds=None)
    return (estimate.mean, estimate.mean) if estimate.n < 2 else (estimate.low, estimate.high)


def interval(values: Iterable[float], bounds: tuple[float, float] | None = (0.0, 1.0)) -> Interval:
    """Mean and 95% t-interval of the finite values (NaN interval for fewer than two). With bounds,
    the interval's ends are clipped to them; a mean outside them raises ValueError, since values
    outside a stated range are a defect upstream that clipping would hide."""
    finite = pd.Series(list(values), dtype=float).dropna()
    n = len(finite)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(finite.mean())
    if bounds is not None:
        # a float's last bits (a share of 1.0000000000000002) are rounding, not a value out of range
        slack = ROUNDING * max(1.0, *(abs(bound) for bound in bounds if math.isfinite(bound)))
        if not bounds[0] - slack <= mean <= bounds[1] + slack:
            raise ValueError(f"the mean {mean!r} of {n} value(s) lies outside the bounds [{bounds[0]}, {bounds[1]}]: "
                             "values outside a stated range are a defect upstream")
        mean = min(max(mean, bounds[0]), bounds[1])
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    # scipy is loaded by the first interval, not by importing this module
    from scipy import stats

    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * finite.std(ddof=1) / math.sqrt(n))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, low, high, n)


def describe(values: Iterable[float], digits: int = 3, bounds: tuple[float, float] | None = (0.0, 1.0)) -> str:
    """'0.950 [0.930, 0.970] (n=3)', '0.950 (n=1)', or '—' without a value (ValueError, as from
    interval, for a mean outside the bounds)."""
    result = interval(values, bounds)
    if result.n == 0:
        return "—"
    if result.n == 1:
        return f"{result.mean:.{digits}f} (n=1)"
    return f"{result.mean:.{digits}f} [{result.low:.{digits}f}, {result.high:.{digits}f}] (n={result.n})"


def describe_count(values: Iterable[float]) -> str:
    """A count over seeds as its median and range, '4 [2–8] (n=3)': a t-interval would run below a
    count's floor (a count of 4.3 [−1.4, 10.1])."""
    finite = pd.Series(list(values), dtype=float).dropna()
    if finite.empty:
        return "—"
    median = f"{finite.median():g}"
    return f"{median} (n=1)" if len(finite) == 1 else f"{median} [{finite.min():g}–{finite.max():g}] (n={len(finite)})"


@dataclass
class Comparison:
    """The rule's verdict on a - b: difference of the means, the test's two-sided p-value, the seeds
    it rests on (pairs when paired, else the smaller sample), and, when unresolved, the seeds per
    setting at which the same test would have POWER at the observed standardized effect (None when
    resolved, degenerate, or beyond MAX_SEEDS)."""

    difference: float
    p_value: float
    n: int
    paired: bool
    resolved: bool
    seeds_needed: int | None

    @property
    def test(self) -> str:
        return "paired t-test" if self.paired else "two-sample t-test"

    def describe(self, digits: int = 3) -> str:
        """'difference 0.120, paired t-test p = 0.003 (n = 5)', and when unresolved
        '...; about 9 seeds would resolve it at 80% power' or '...; no number of seeds up to 1000 would'."""
        head = f"difference {self.difference:.{digits}f}"
        if math.isnan(self.p_value):
            return f"{head}, too few seeds for a {self.test} (n = {self.n})"
        p = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.3f}"
        text = f"{head}, {self.test} {p} (n = {self.n})"
        if self.resolved:
            return text
        if self.seeds_needed is None:
            return f"{text}; no number of seeds up to {MAX_SEEDS} would"
        return f"{text}; about {self.seeds_needed} seeds{'' if self.paired else ' each'} would resolve it at {POWER:.0%} power"


def _values(values: Sequence[float]) -> np.ndarray:
    return pd.Series(list(values), dtype=float).to_numpy()


def compare(a: Sequence[float], b: Sequence[float], paired: bool) -> Comparison:
    """The rule on per-seed values a and b (lists or Series, read by position): paired t-test on
    a[i] - b[i] when paired (equal lengths, ValueError otherwise; the caller aligns them by seed),
    Student's pooled two-sample t-test otherwise. NaN values are missing seeds: a pair with one is
    dropped, an unpaired NaN is dropped from its side."""
    x, y = _values(a), _values(b)
    if paired:
        if len(x) != len(y):
            raise ValueError(f"a paired comparison needs one value per seed on each side; got {len(x)} and {len(y)}")
        kept = ~(np.isnan(x) | np.isnan(y))
        x, y = x[kept], y[kept]
    else:
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    n = len(x) if paired else min(len(x), len(y))
    difference = float(x.mean() - y.mean()) if len(x) and len(y) else math.nan
    # Degenerate: a t-test needs two values per side (two pairs), else it has no spread to test against.
    if len(x) < 2 or len(y) < 2:
        return Comparison(difference, math.nan, n, paired, False, None)
    if paired:
        spread = float(np.std(x - y, ddof=1))
    else:
        spread = math.sqrt(((len(x) - 1) * np.var(x, ddof=1) + (len(y) - 1) * np.var(y, ddof=1)) / (len(x) + len(y) - 2))
    # Degenerate: no spread (every paired difference equal, or both samples constant) leaves t = d / 0.
    # Then any non-zero difference is certain (p = 0) and a zero one is no difference at all (p = 1);
    # "no spread" and "zero" allow the rounding of values of this size (0.9 - 0.8 != 0.7 - 0.6).
    tolerance = 1e-12 * max(1.0, float(np.max(np.abs(np.concatenate([x, y])))))
    if spread <= tolerance:
        resolved = abs(difference) > tolerance
        return Comparison(difference, 0.0 if resolved else 1.0, n, paired, resolved, None)
    from scipy import stats

    with warnings.catch_warnings():  # scipy's alarm at one constant sample: the spread that matters is not zero
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        p_value = float(stats.ttest_rel(x, y).pvalue if paired else stats.ttest_ind(x, y, equal_var=True).pvalue)
    resolved = p_value < ALPHA
    return Comparison(difference, p_value, n, paired, resolved, None if resolved else seeds_needed(difference / spread, paired))


def seeds_needed(effect: float, paired: bool, power: float = POWER, alpha: float = ALPHA, max_seeds: int = MAX_SEEDS) -> int | None:
    """The smallest n >= 2 (pairs when paired, else seeds per setting) at which the rule's two-sided
    test at level alpha has at least this power against the standardized effect (mean difference
    over the sd of the differences when paired, over the pooled sd otherwise), from the test's
    noncentral t: paired df n - 1 and noncentrality effect sqrt(n), pooled df 2n - 2 and
    noncentrality effect sqrt(n / 2); power = P(T > t_crit) + P(T < -t_crit). None beyond max_seeds."""
    if math.isnan(effect):
        raise ValueError("seeds_needed needs an effect, not NaN")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"power ({power}) and alpha ({alpha}) must lie in (0, 1)")
    if max_seeds < 2:
        return None
    if math.isinf(effect):
        return 2
    from scipy import stats

    # Power grows with n at a fixed effect, so the first n that reaches it is the answer; all of
    # 2..max_seeds at once costs a few milliseconds.
    n = np.arange(2, max_seeds + 1)
    df = n - 1.0 if paired else 2.0 * n - 2.0
    noncentrality = abs(effect) * (np.sqrt(n) if paired else np.sqrt(n / 2))
    critical = stats.t.isf(alpha / 2, df)
    achieved = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
    # scipy's nct gives NaN past a noncentrality of about 1e10; there T = (Z + nc) / sqrt(V / df) is
    # nc / sqrt(V / df) to within 1e-10, so power is P(V < df (nc / t_crit)^2) with V chi-square(df).
    with np.errstate(over="ignore"):  # an infinite ratio is a power of 1
        limit = stats.chi2.cdf(df * (noncentrality / critical) ** 2, df)
    achieved = np.where(np.isnan(achieved), limit, achieved)
    reached = np.flatnonzero(achieved >= power)
    return int(n[reached[0]]) if len(reached) else None


def above_chance(correct: int, scored: int, chance: float) -> float:
    """The one-sided exact binomial p-value that a run with `correct` of `scored` answers right is
    more accurate than its chance level (small: above chance)."""
    if int(correct) != correct or int(scored) != scored:
        raise ValueError(f"correct ({correct}) and scored ({scored}) must be whole counts")
    if scored < 1:
        raise ValueError(f"above_chance needs at least one scored answer; got scored = {scored}")
    if not 0 <= correct <= scored:
        raise ValueError(f"correct ({correct}) must lie in [0, scored = {scored}]")
    if not 0 < chance < 1:
        raise ValueError(f"the chance level must lie in (0, 1); got {chance}")
    from scipy import stats

    return float(stats.binomtest(int(correct), int(scored), chance, alternative="greater").pvalue)
