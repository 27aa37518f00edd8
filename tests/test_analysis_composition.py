"""Composition scores as TransformerLens computes them, and the acceptance on the hand-coded
circuit: its previous-token head feeds its induction head by K-composition alone."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from analyses.composition import Composition, composition_scores, random_baseline
from bench.core.config import build_model, build_task
from bench.core.measure import trained_run
from variants import VARIANTS


def test_the_score_is_the_normalised_frobenius_norm_of_the_product():
    generator = torch.Generator().manual_seed(0)
    left, right = torch.randn(2, 6, 6, generator=generator, dtype=torch.float64)
    expected = torch.linalg.norm(left @ right) / (torch.linalg.norm(left) * torch.linalg.norm(right))
    assert composition_scores(left, right).item() == pytest.approx(expected.item())
    assert composition_scores(3 * left, 0.5 * right).item() == pytest.approx(expected.item()), "scale-free"
    isometry = torch.eye(6, dtype=torch.float64)[:, :2] @ torch.eye(6, dtype=torch.float64)[:2]
    assert composition_scores(isometry, isometry).item() == pytest.approx(1 / math.sqrt(2)), "rank-k maps composed exactly: 1/sqrt(k)"


def test_the_random_baseline_of_full_rank_matrices_is_about_one_over_root_d():
    mean, std = random_baseline(64, 128, 128, 200, torch.Generator().manual_seed(0))
    assert mean == pytest.approx(1 / 8, rel=0.05) and 0 < std < 0.01


def test_standard_attention_exposes_its_per_head_matrices_in_transformer_lens_shapes():
    torch.manual_seed(0)
    layer = VARIANTS["standard"](32, 4, 16).double()
    matrices = layer.head_matrices()
    assert matrices.W_Q.shape == (4, 32, 8) and matrices.W_O.shape == (4, 8, 32)
    x = torch.randn(1, 5, 32, dtype=torch.float64)
    q_pre, k_pre, _, _ = layer.rotary_queries_and_keys(x)
    torch.testing.assert_close(q_pre[0, 2], x[0] @ matrices.W_Q[2])  # q = x W_Q, head by head
    torch.testing.assert_close(k_pre[0, 1], x[0] @ matrices.W_K[1])


def test_the_hand_coded_circuit_composes_by_k_composition_only(make_config):
    cfg = make_config("variant=handcoded_induction", "task=induction")
    torch.manual_seed(0)
    run = trained_run(build_model(cfg), build_task(cfg), cfg, torch.device("cpu"))
    assert Composition().applies(run) is None
    rows = pd.DataFrame(Composition().measure(run).rows).dropna(subset=["score"])
    pair = rows[(rows["left"] == "L0H0") & (rows["right"] == "L1H0")].set_index("mode")
    k_scores = rows[rows["mode"] == "K"]
    assert k_scores.loc[k_scores["score"].idxmax(), ["left", "right"]].tolist() == ["L0H0", "L1H0"]
    baseline, spread = pair.loc["K", "baseline_mean"], pair.loc["K", "baseline_std"]
    assert pair.loc["K", "score"] > baseline + 20 * spread, "well above the random baseline"
    assert pair.loc["Q", "score"] == 0 and pair.loc["V", "score"] == 0, "it writes and reads disjoint subspaces"
    assert set(rows["left"]) == {"L0H0"}, "spare heads write nothing: no score, rather than a meaningless one"
