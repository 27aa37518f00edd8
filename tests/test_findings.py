"""The findings at the top of the report: computed from the selected runs, each with its number."""
from __future__ import annotations

import pytest
from scipy import stats

from bench.report.build import write_report
from bench.report.protocol import at_chance, seeds_to_resolve
from test_report import result, write_results


def test_seeds_to_resolve_is_the_least_n_whose_t_test_separates_the_difference():
    n = seeds_to_resolve(0.1, 0.1)
    assert stats.t.ppf(0.975, 2 * n - 2) * 0.1 * (2 / n) ** 0.5 < 0.1 <= stats.t.ppf(0.975, 2 * n - 4) * 0.1 * (2 / (n - 1)) ** 0.5
    assert seeds_to_resolve(0.001, 1.0) is None, "beyond any sensible number of seeds"


def test_at_chance_allows_a_margin_above_the_chance_level():
    assert at_chance(0.03, 1 / 63) and not at_chance(0.5, 1 / 63) and at_chance(0.12, 1 / 16) and not at_chance(0.2, 1 / 16)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("findings")
    records = [result("standard", "copy", seed, accuracy) for seed, accuracy in enumerate((1.0, 0.96, 0.98))]
    records += [result("triple", "copy", seed, accuracy) for seed, accuracy in enumerate((0.97, 0.99, 0.95))]
    records += [result("sluggish", "copy", seed, 0.07) for seed in range(3)]
    records += [result("handcoded_induction", "copy", seed, 0.45, trained=False) for seed in range(2)]
    records += [result("positional", "copy", seed, 1.0, control=True) for seed in range(2)]
    for record in records[6:9]:
        record["curve"] = [{"step": 0, "test_loss": 2.77, "test_accuracy": 0.06}, {"step": 100, "test_loss": 2.75, "test_accuracy": 0.07}]
    return write_report(write_results(tmp_path / "sweep", records), tmp_path / "out").read_text().split("## Overview")[0]


def test_the_winner_is_named_with_its_interval_and_a_close_race_is_unresolved_with_the_seeds_it_needs(report):
    assert "- copy: standard leads with test accuracy 0.980 [0.930, 1.000] (n=3), ahead of triple at 0.970 [0.920, 1.000] (n=3)." in report
    assert "- copy: standard vs triple is unresolved: difference 0.010, pooled spread (sd) 0.020, n = 3 and 3; about 32 seeds each" in report


def test_settings_with_the_same_mean_tie_rather_than_race(tmp_path):
    records = [result(variant, "copy", seed, 1.0) for variant in ("standard", "alibi") for seed in range(3)]
    text = write_report(write_results(tmp_path / "sweep", records), tmp_path / "out").read_text()
    assert "- copy: alibi, standard tie for the lead at 1.000 (mean test accuracy; seeds: 3, 3)." in text
    assert "unresolved" not in text


def test_a_variant_at_chance_with_a_flat_loss_is_called_out(report):
    assert "- sluggish stays at chance on copy: test accuracy 0.070 against chance 0.062; its test loss barely moved (2.77 → 2.75, flat)." in report


def test_constructed_variants_and_controls_are_shown_as_references_never_ranked(report):
    assert "- copy: handcoded_induction (constructed, not trained: a reference, not ranked) reaches 0.450 [0.450, 0.450] (n=2)." in report
    assert "- copy: positional (a control, not ranked) reaches 1.000 [1.000, 1.000] (n=2)." in report
    assert "positional leads" not in report
