"""Learning targets on associative recall (slow: `python -m pytest -m slow`): two layers of standard
attention solve MQAR at seq_len 64 with 8 pairs; one layer cannot, since finding the value needs
a previous-token head before the key-matching head (an induction circuit)."""
from __future__ import annotations

import pytest

from bench.core.job import run

pytestmark = pytest.mark.slow

# Zoology's smallest setting, at a vocabulary a CPU trains in minutes (Zoology uses 8,192).
MQAR = ("task=assoc_recall", "task.seq_len=64", "task.num_kv_pairs=8", "task.vocab_size=256", "model.d_model=64",
        "train.steps=2000", "train.progress=false")  # fmt: skip


def test_two_layers_of_standard_attention_solve_mqar_at_64_tokens_and_8_pairs(make_config, tmp_path):
    cfg = make_config("variant=standard", "model.n_layers=2", *MQAR)
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed"
    assert record["metrics"]["test"]["accuracy"] >= 0.99


def test_one_layer_does_not_pass_within_the_same_budget(make_config, tmp_path):
    cfg = make_config("variant=standard", "model.n_layers=1", *MQAR)
    record = run(cfg, tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed" and record["steps_run"] == 2000
    # one layer can attend to the sequence's values but not to the right one: about 1/8 of the answers
    assert record["metrics"]["test"]["accuracy"] < 0.25
