"""The one statistical rule of plugin.statistics: paired t-test where seeds share data, pooled
two-sample t-test otherwise, seeds at 80% power from the same test's noncentral t, and the exact
binomial test against chance; and the interval that never clips its mean. Hand-made data only."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from plugin.statistics import (
    ALPHA,
    Comparison,
    above_chance,
    compare,
    describe,
    interval,
    seeds_needed,
)

HAND_MADE = [
    ([0.91, 0.85, 0.88, 0.79, 0.83], [0.86, 0.84, 0.80, 0.78, 0.77]),
    ([1.0, 0.98, 0.97, 0.99], [0.97, 0.99, 0.95, 0.96]),
    ([0.42, 0.55, 0.61], [0.40, 0.52, 0.48]),
    ([0.2, 0.9, 0.5, 0.7, 0.3, 0.6], [0.1, 0.8, 0.55, 0.5, 0.35, 0.4]),
]


@pytest.mark.parametrize(("a", "b"), HAND_MADE)
def test_the_p_values_are_scipys_paired_and_pooled_t_tests(a, b):
    paired, unpaired = compare(a, b, paired=True), compare(a, b, paired=False)
    assert paired.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert unpaired.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, rel=1e-12)
    assert paired.difference == pytest.approx(np.mean(a) - np.mean(b)) == unpaired.difference
    assert (paired.n, paired.paired, unpaired.n, unpaired.paired) == (len(a), True, len(a), False)
    for result in (paired, unpaired):
        assert result.resolved == (result.p_value < ALPHA)
        assert (result.seeds_needed is None) == result.resolved


def test_unpaired_samples_of_different_sizes_use_the_pooled_test_and_the_smaller_size():
    a, b = [0.7, 0.75, 0.8, 0.72, 0.78, 0.74], [0.6, 0.7, 0.65]
    result = compare(a, b, paired=False)
    assert result.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, rel=1e-12)
    assert result.p_value != pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-3), "Student's, not Welch's"
    assert result.n == 3


def test_series_are_read_by_position_the_caller_aligns_seeds():
    a, b = pd.Series([0.9, 0.8, 0.85], index=[7, 8, 9]), pd.Series([0.88, 0.75, 0.84], index=[0, 1, 2])
    assert compare(a, b, paired=True).p_value == pytest.approx(stats.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue, rel=1e-12)


def monte_carlo_power(effect: float, n: int, paired: bool, simulations: int = 20_000) -> float:
    """The share of simulated normal experiments (unit sd, the given mean difference) whose two-sided
    t-test rejects at ALPHA: paired, n differences; unpaired, n per group with the pooled test."""
    generator = np.random.default_rng(12345)
    if paired:
        differences = generator.normal(effect, 1.0, (simulations, n))
        t = differences.mean(axis=1) / (differences.std(axis=1, ddof=1) / math.sqrt(n))
        df = n - 1
    else:
        a, b = generator.normal(effect, 1.0, (simulations, n)), generator.normal(0.0, 1.0, (simulations, n))
        pooled = np.sqrt((a.var(axis=1, ddof=1) + b.var(axis=1, ddof=1)) / 2)
        t = (a.mean(axis=1) - b.mean(axis=1)) / (pooled * math.sqrt(2 / n))
        df = 2 * n - 2
    return float(np.mean(np.abs(t) > stats.t.isf(ALPHA / 2, df)))


# Effects where the exact power moves well past 0.8 in one seed (paired 1.5: 0.71 at 5, 0.83 at 6;
# unpaired 1.7: 0.76 at 6, 0.83 at 7), so that an answer one seed off either way fails.
@pytest.mark.parametrize(("effect", "paired"), [(1.5, True), (1.7, False)])
def test_seeds_needed_is_the_least_n_with_80_percent_power_by_simulation(effect, paired):
    n = seeds_needed(effect, paired)
    assert n is not None and n >= 3
    assert monte_carlo_power(effect, n, paired) >= 0.78
    assert monte_carlo_power(effect, n - 1, paired) < 0.8 + 0.01


def test_seeds_needed_matches_the_textbook_sample_sizes():
    # Cohen's d = 0.5 at 80% power, two-sided alpha 0.05: 64 per group (two-sample), 34 pairs (paired, d_z = 0.5).
    assert seeds_needed(0.5, paired=False) == 64
    assert seeds_needed(0.5, paired=True) == 34
    assert seeds_needed(-0.5, paired=True) == 34, "two-sided: the sign does not matter"
    assert seeds_needed(0.2, paired=False) == 394


def test_seeds_needed_says_none_beyond_its_ceiling_and_copes_with_extremes():
    assert seeds_needed(0.0, paired=True) is None and seeds_needed(0.001, paired=False) is None
    assert seeds_needed(0.5, paired=False, max_seeds=63) is None and seeds_needed(0.5, paired=False, max_seeds=64) == 64
    assert seeds_needed(1e12, paired=True) == 2 and seeds_needed(math.inf, paired=False) == 2
    assert seeds_needed(0.5, paired=True, power=0.9) > 34 and seeds_needed(0.5, paired=True, alpha=0.01) > 34
    with pytest.raises(ValueError):
        seeds_needed(math.nan, paired=True)
    with pytest.raises(ValueError):
        seeds_needed(0.5, paired=True, power=1.0)


def test_an_unresolved_comparison_never_asks_for_fewer_seeds_than_it_has():
    """p >= 0.05 at the observed effect puts the same test's power at n near 50% at most, so the
    seeds that would give 80% are more than n (or none within reach)."""
    generator = np.random.default_rng(2024)
    unresolved = 0
    for _ in range(150):
        paired = bool(generator.integers(2))
        n_a = int(generator.integers(2, 9))
        n_b = n_a if paired else int(generator.integers(2, 9))
        shift = generator.choice([0.0, 0.3, 1.0, 2.0])
        a, b = generator.normal(shift, 1.0, n_a), generator.normal(0.0, 1.0, n_b)
        result = compare(a.tolist(), b.tolist(), paired)
        assert result.resolved == (result.p_value < ALPHA)
        if not result.resolved:
            unresolved += 1
            assert result.seeds_needed is None or result.seeds_needed > result.n, (a, b, paired, result)
    assert unresolved > 30, "the property was tested on enough unresolved cases"


def test_pairing_matters_when_seeds_share_data():
    # Seeds differ a lot from one another, but b trails a by 0.02 to 0.03 on every seed.
    a = [0.80, 0.70, 0.90, 0.60, 0.75]
    b = [0.78, 0.67, 0.88, 0.575, 0.72]
    paired, unpaired = compare(a, b, paired=True), compare(a, b, paired=False)
    assert paired.resolved and paired.p_value < 0.001
    assert not unpaired.resolved and unpaired.p_value > 0.5
    assert unpaired.seeds_needed is not None and unpaired.seeds_needed > 100
    assert paired.describe() == "difference 0.025, paired t-test p < 0.001 (n = 5)"


def test_the_description_states_the_test_and_the_seeds_that_would_resolve_it():
    resolved = Comparison(0.12, 0.003, 5, True, True, None)
    assert resolved.describe() == "difference 0.120, paired t-test p = 0.003 (n = 5)"
    assert Comparison(0.05, 0.2, 3, True, False, 9).describe() == \
        "difference 0.050, paired t-test p = 0.200 (n = 3); about 9 seeds would resolve it at 80% power"
    assert Comparison(0.05, 0.2, 3, False, False, 9).describe() == \
        "difference 0.050, two-sample t-test p = 0.200 (n = 3); about 9 seeds each would resolve it at 80% power"
    assert Comparison(0.001, 0.9, 3, False, False, None).describe().endswith("; no number of seeds up to 1000 would")
    assert compare([0.5], [0.4], paired=True).describe() == "difference 0.100, too few seeds for a paired t-test (n = 1)"


def test_degenerate_comparisons_are_stated_not_computed():
    with pytest.raises(ValueError, match="3 and 2"):
        compare([0.1, 0.2, 0.3], [0.1, 0.2], paired=True)
    for result in (compare([0.5], [0.4], paired=True), compare([0.5], [0.4, 0.3, 0.2], paired=False), compare([], [], paired=False)):
        assert math.isnan(result.p_value) and not result.resolved and result.seeds_needed is None
    # Every paired difference the same (0.9 - 0.8 and 0.7 - 0.6 differ only by rounding): certain.
    same_step = compare([0.9, 0.8, 0.7], [0.8, 0.7, 0.6], paired=True)
    assert (same_step.p_value, same_step.resolved, same_step.seeds_needed) == (0.0, True, None)
    assert same_step.difference == pytest.approx(0.1)
    no_step = compare([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], paired=True)
    assert (no_step.p_value, no_step.resolved, no_step.seeds_needed, no_step.difference) == (1.0, False, None, 0.0)
    # Both samples constant.
    apart = compare([1.0, 1.0, 1.0], [0.5, 0.5], paired=False)
    assert (apart.p_value, apart.resolved, apart.seeds_needed, apart.n) == (0.0, True, None, 2)
    level = compare([0.5, 0.5, 0.5], [0.5, 0.5], paired=False)
    assert (level.p_value, level.resolved, level.seeds_needed) == (1.0, False, None)
    # One constant sample is no degenerate case for the pooled test (nor a reason for a warning).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one_constant = compare([1.0, 1.0, 1.0], [0.9, 0.95, 0.85], paired=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = stats.ttest_ind([1.0, 1.0, 1.0], [0.9, 0.95, 0.85]).pvalue
    assert one_constant.resolved and one_constant.p_value == pytest.approx(expected, rel=1e-12)


def test_missing_seeds_drop_their_pair_or_their_value():
    a, b = [0.9, math.nan, 0.8, 0.85], [0.88, 0.7, math.nan, 0.8]
    paired = compare(a, b, paired=True)
    assert paired.n == 2 and paired.p_value == pytest.approx(stats.ttest_rel([0.9, 0.85], [0.88, 0.8]).pvalue)
    unpaired = compare(a, b, paired=False)
    assert unpaired.n == 3 and unpaired.p_value == pytest.approx(stats.ttest_ind([0.9, 0.8, 0.85], [0.88, 0.7, 0.8]).pvalue)


@pytest.mark.parametrize(("correct", "scored", "chance"), [(60, 100, 0.5), (7, 10, 0.25), (0, 5, 0.1), (12, 12, 1 / 16), (3, 40, 1 / 63)])
def test_above_chance_is_the_one_sided_exact_binomial_test(correct, scored, chance):
    assert above_chance(correct, scored, chance) == pytest.approx(stats.binomtest(correct, scored, chance, alternative="greater").pvalue, rel=1e-12)


def test_above_chance_rejects_what_is_no_binomial_count():
    assert above_chance(60, 100, 0.5) < 0.05 < above_chance(55, 100, 0.5)
    for correct, scored, chance in [(0, 0, 0.5), (1, -1, 0.5), (3, 10, 0.0), (3, 10, 1.0), (3, 10, 1.5), (3, 10, math.nan), (11, 10, 0.5),
                                    (-1, 10, 0.5), (2.5, 10, 0.5)]:  # fmt: skip
        with pytest.raises(ValueError):
            above_chance(correct, scored, chance)


def test_an_interval_never_clips_its_mean():
    for values in ([1.2, 1.1], [-0.1, -0.2], [1.5], [0.9, 1.0, 1.4]):
        with pytest.raises(ValueError, match=r"outside the bounds \[0\.0, 1\.0\]") as raised:
            interval(values)
        assert repr(float(np.mean(values))) in str(raised.value), "the message names the value"
    with pytest.raises(ValueError, match="outside"):
        describe([1.2, 1.1])
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        interval([12.0, 11.0], bounds=(0, 10))
    assert interval([1.2, 1.1], bounds=None).mean == pytest.approx(1.15)


def test_an_interval_clips_only_its_ends():
    result = interval([1.0, 0.98])
    raw = interval([1.0, 0.98], bounds=None)
    assert result.mean == raw.mean == pytest.approx(0.99)
    assert result.high == 1.0 < raw.high and result.low == raw.low
    both = interval([0.0, 1.0])
    assert (both.low, both.mean, both.high) == (0.0, 0.5, 1.0)
    assert interval([1.0]).mean == 1.0 and interval([0.0, 0.0]).mean == 0.0, "the bounds themselves are inside"
    assert describe([1.0, 0.98]) == "0.990 [0.863, 1.000] (n=2)"
