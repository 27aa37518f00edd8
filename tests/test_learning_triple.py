"""Learning target of the triple variant, as set by its issue (slow: `python -m pytest -m slow`)."""
from __future__ import annotations

import pytest

from bench.core.job import run

pytestmark = pytest.mark.slow


def test_one_layer_learns_the_seeds_fixed_copy_within_1000_steps(make_config, tmp_path):
    cfg = make_config(
        "variant=triple", "task=copy", "task.seq_len=32", "task.vocab_size=16", "model.n_layers=1",
        "train.steps=1000", "train.target_accuracy=0.97", "train.progress=false",
    )  # fmt: skip
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed"
    assert record["metrics"]["test"]["accuracy"] >= 0.97 and record["steps_to_target"]["test"] <= 1000
