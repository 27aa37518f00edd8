"""Grokking as a learning target (slow: `python -m pytest -m slow`, about 2.5 min): the grokking
experiment's settings at a smaller prime, with half the pairs for training, first fit the training
pairs, then, later, the held-out ones; the embedding it ends with is sparse in the Fourier basis of
Z_p (Nanda et al. 2023). At p 59 a third of the pairs is too few: 3,000 steps memorised them with
test accuracy at 0.04."""
from __future__ import annotations

import json

import pytest

from bench.core.job import run
from bench.core.measure import ANALYSIS_DIR
from bench.report.records import steps_to_grok

pytestmark = pytest.mark.slow

P = 59  # 1,740 training pairs: a full-batch step about half of p = 113's
GROKKING = ("+experiment=grokking", "variant=standard", f"task.p={P}", f"task.vocab_size={P + 1}", "task.train_fraction=0.5",
            "train.steps=1500", "train.progress=false")  # fmt: skip


def test_standard_attention_memorises_then_groks_with_a_sparse_fourier_embedding(make_config, tmp_path):
    record = run(make_config(*GROKKING), tmp_path, single_run=False, overrides=[])
    assert record["status"] == "completed"
    curve = record["curve"]
    memorised = next(point["step"] for point in curve if point["train_accuracy"] >= 0.99)
    grokked = steps_to_grok(curve)
    assert grokked is not None and record["metrics"]["test"]["accuracy"] >= 0.95
    at_memorised = next(point for point in curve if point["step"] == memorised)
    assert grokked > memorised and at_memorised["test_accuracy"] < 0.5, "the training set is fitted first, the test set later"

    fourier = json.loads((tmp_path / ANALYSIS_DIR / "fourier.json").read_text())
    keys = [row for row in fourier["rows"] if row["kind"] == "embedding" and row["key"]]
    assert 1 <= len(keys) <= 6
    assert sum(row["energy_share"] for row in keys) >= 0.9
