"""The seed's loud-mismatch table, reproduced from the triple variant's scoring function."""
from __future__ import annotations

import math

import pytest

import variants.triple as triple
from analyses.loud_mismatch import MAGNITUDES, loud_mismatch_table


def test_the_table_matches_the_seed():
    table = loud_mismatch_table()
    assert list(table.columns) == ["key", "magnitude", "dot_product", "gram_score"]
    match, loud = table.iloc[0], table.iloc[1:]
    assert match.key == "true match" and match.dot_product == pytest.approx(1 / math.sqrt(2))
    assert match.gram_score == pytest.approx(0, abs=1e-12)
    assert list(loud.magnitude) == list(MAGNITUDES)
    assert loud.dot_product.tolist() == pytest.approx([0.1] * len(MAGNITUDES))  # blind to the magnitude
    assert loud.gram_score.tolist() == pytest.approx([-(m**2) for m in MAGNITUDES], rel=1e-12)


def test_the_table_comes_from_the_variants_scoring_function(monkeypatch):
    monkeypatch.setattr(triple, "gram_scores", lambda q, k, r: 2 * (q @ k.T))
    assert loud_mismatch_table().gram_score.tolist() == pytest.approx([math.sqrt(2)] + [0.2] * len(MAGNITUDES))
