"""Learning targets of the standard variant (slow: `python -m pytest -m slow`)."""
from __future__ import annotations

import pytest

from bench.app import run

pytestmark = pytest.mark.slow


def test_one_layer_learns_the_fixed_copy_within_1000_steps(make_config, tmp_path):
    cfg = make_config("task=copy", "task.seq_len=32", "task.vocab_size=16", "model.n_layers=1", "train.steps=1000", "train.progress=false")
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed"
    assert record["metrics"]["accuracy"] >= 0.99 and record["steps_to_target"] <= 1000


def test_two_layers_learn_induction_at_random_gaps_within_the_default_budget(make_config, tmp_path):
    cfg = make_config("task=induction", "model.n_layers=2", "train.progress=false")
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and record["steps_run"] <= cfg.train.steps
    assert record["metrics"]["accuracy"] >= 0.95
