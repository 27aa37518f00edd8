"""Learning targets of the standard variant (slow: `python -m pytest -m slow`)."""
from __future__ import annotations

import json

import pytest

from bench.core.job import run

pytestmark = pytest.mark.slow


def test_one_layer_learns_the_fixed_copy_within_1000_steps(make_config, tmp_path):
    cfg = make_config("task=copy", "task.seq_len=32", "task.vocab_size=16", "model.n_layers=1", "train.steps=1000", "train.progress=false")
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed"
    assert record["metrics"]["test"]["accuracy"] >= 0.99 and record["steps_to_target"]["test"] <= 1000


def test_two_layers_learn_induction_at_random_gaps_within_the_default_budget(make_config, tmp_path):
    cfg = make_config("task=induction", "model.n_layers=2", "train.progress=false")
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and record["steps_run"] <= cfg.train.steps
    assert record["metrics"]["test"]["accuracy"] >= 0.95


def test_one_layer_learns_the_previous_token_with_a_qk_offset_of_minus_one(make_config, tmp_path):
    cfg = make_config("task=prev_token", "model.n_layers=1", "train.progress=false")
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and record["metrics"]["test"]["accuracy"] >= 0.99
    rows = json.loads((tmp_path / "analyses" / "qk_offset.json").read_text())["rows"]
    working = max(rows, key=lambda row: row["previous_token_mass"])
    assert working["offset"] == -1, rows
