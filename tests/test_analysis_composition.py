"""Composition scores as TransformerLens computes them, their null from trained weights, the
ablations behind every mechanism claim, and the acceptance on the hand-coded circuit: its
previous-token head feeds its induction head by K-composition alone, and removing either head
takes induction to the control's level while removing other heads does not."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from analyses.ablation import Ablation, claim_tests
from analyses.composition import Composition, best_scores, composition_scores
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


def test_the_null_across_seeds_scores_one_runs_earlier_heads_against_anothers_later_heads():
    generator = torch.Generator().manual_seed(0)
    first = {name: torch.randn(2, 8, 8, generator=generator) for name in ("OV_0", "Q_0", "OV_1", "Q_1")}
    second = {name: torch.randn(2, 8, 8, generator=generator) for name in ("OV_0", "Q_0", "OV_1", "Q_1")}
    scores = best_scores(first, second)
    expected_k = composition_scores(first["OV_0"].double()[:, None], second["Q_1"].double().transpose(-2, -1)[None]).max()
    assert scores["K"] == pytest.approx(expected_k.item())
    assert scores["V"] == pytest.approx(composition_scores(first["OV_0"].double()[:, None], second["OV_1"].double()[None]).max().item())
    silent = {**first, "OV_0": torch.zeros(2, 8, 8)}
    assert math.isnan(best_scores(silent, second)["K"]), "heads that write nothing give no sample"


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
    assert pair.loc["K", "score"] > 0.2
    assert pair.loc["Q", "score"] == 0 and pair.loc["V", "score"] == 0, "it writes and reads disjoint subspaces"
    assert set(rows["left"]) == {"L0H0"}, "spare heads write nothing: no score, rather than a meaningless one"


def test_removing_either_head_of_the_hand_coded_circuit_takes_induction_to_the_controls_level(make_config):
    cfg = make_config("variant=handcoded_induction", "task=induction", "model.n_heads=2", "analysis.ablation.sequences=64")
    torch.manual_seed(0)
    run = trained_run(build_model(cfg), build_task(cfg), cfg, torch.device("cpu"))
    rows = pd.DataFrame(Ablation(sequences=64).measure(run).rows).set_index("heads")["accuracy"]
    assert rows[""] >= 0.99
    assert rows["L0H0"] < 0.15 and rows["L1H0"] < 0.15, "the positional control scores about 0.1 on induction"
    assert rows["L0H1"] >= 0.99 and rows["L1H1"] >= 0.99 and rows["L0H1+L1H1"] >= 0.99, "spare heads write nothing"


def test_a_mechanism_is_claimed_only_where_removing_the_named_heads_halves_accuracy_and_other_heads_do_not():
    identity = {"setting": "s", "task": "t", "seed": 0, "variant": "standard"}
    ablations = pd.DataFrame([
        {"run": "r", "heads": "", "count": 0, "accuracy": 1.0}, {"run": "r", "heads": "L0H0", "count": 1, "accuracy": 0.2},
        {"run": "r", "heads": "L0H1", "count": 1, "accuracy": 0.9}, {"run": "r", "heads": "L1H0", "count": 1, "accuracy": 0.3},
        {"run": "r", "heads": "L1H1", "count": 1, "accuracy": 0.95},
    ]).assign(**identity)  # fmt: skip
    scores = pd.DataFrame([
        {"run": "r", "head": head, "layer": int(head[1]), "head_index": int(head[3]), "pattern": pattern, "score": score}
        for head, pattern, score in [("L0H0", "previous_token", 0.9), ("L0H1", "previous_token", 0.1), ("L1H0", "previous_token", 0.0),
                                     ("L1H1", "previous_token", 0.0), ("L1H1", "induction", 0.8), ("L1H0", "induction", 0.2),
                                     ("L0H0", "induction", 0.0), ("L0H1", "induction", 0.0)]
    ])  # fmt: skip
    tests = claim_tests(ablations, lambda name: scores if name == "head_scores" else pd.DataFrame()).set_index("role")
    assert tests.loc["previous-token head(s)", "heads"] == "L0H0" and bool(tests.loc["previous-token head(s)", "needed"])
    assert tests.loc["induction head(s)", "heads"] == "L1H1" and not tests.loc["induction head(s)", "needed"], (
        "the best induction score is not what the answer needs: no claim"
    )


def test_a_constructed_model_is_placed_in_the_trained_settings_null_at_its_task(tmp_path):
    from analyses.base import SectionData
    from analyses.composition import trained_null

    runs = pd.DataFrame({"run": ["h0", "h1", "s0", "s1"], "setting": ["handcoded", "handcoded", "standard", "standard"],
                         "task": ["induction"] * 4, "trained": [False, False, True, True], "variant": ["x", "x", "standard", "standard"]})  # fmt: skip
    best = runs.assign(mode="K", score=[0.218, 0.218, 0.28, 0.29])
    across = pd.DataFrame({"run": ["h0", "h1", "s0", "s1"], "other": ["h1", "h0", "s1", "s0"], "mode": "K", "score": [0.218, 0.218, 0.14, 0.15]})
    data = SectionData("composition", best, runs, tmp_path, lambda run: {}, lambda name: pd.DataFrame(), runs)
    null = trained_null(best, across, data).set_index(["setting", "mode"])
    assert null.loc[("standard", "K"), "across_seeds"] == [0.14, 0.15]
    assert null.loc[("handcoded", "K"), "across_seeds"] == [0.14, 0.15], "one model in every seed: the trained settings' null"
