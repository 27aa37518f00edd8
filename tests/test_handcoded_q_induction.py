"""Induction by Q-composition, constructed with absolute positions: it solves induction at random
gaps with no training, through Q-composition alone, and each of its two heads is necessary."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from analyses.composition import Composition
from bench.core.config import ConfigError, build_model, build_task, validate
from bench.core.measure import trained_run
from bench.experiments.evaluate_handcoded import accuracy
from variants import VARIANTS

CIRCUIT = ("variant=handcoded_q_induction", "task=induction", "task.seq_len=64", "train.progress=false",
           *VARIANTS["handcoded_q_induction"].required_config)  # fmt: skip


def test_it_solves_induction_at_random_gaps_without_training(make_config):
    assert accuracy(make_config(*CIRCUIT)) == 1.0


def test_ablating_either_head_drops_it_near_chance(make_config):
    # without layer 0, layer 1's query is empty and it averages every earlier token, which favours
    # tokens seen before: a few times chance (1/63), nowhere near 1; without layer 1 nothing is written
    assert accuracy(make_config(*CIRCUIT, "variant.ablate=layer0_ov")) <= 0.1
    assert accuracy(make_config(*CIRCUIT, "variant.ablate=layer1_ov")) <= 0.02


def test_it_composes_by_q_composition_only(make_config):
    cfg = make_config(*CIRCUIT)
    torch.manual_seed(0)
    rows = pd.DataFrame(Composition().measure(trained_run(build_model(cfg), build_task(cfg), cfg, torch.device("cpu"))).rows)
    pair = rows[(rows["left"] == "L0H0") & (rows["right"] == "L1H0")].set_index("mode")
    q_scores = rows[rows["mode"] == "Q"].dropna(subset=["score"])
    assert q_scores.loc[q_scores["score"].idxmax(), "right"] == "L1H0"
    assert pair.loc["Q", "score"] > 0.1
    assert pair.loc["K", "score"] == 0 and pair.loc["V", "score"] == 0


def test_position_codes_are_orthonormal_over_the_context_and_the_shift_is_exact():
    variant = VARIANTS["handcoded_q_induction"](192, 4, 64)
    codes = variant.position_codes(65)
    torch.testing.assert_close(codes[:64] @ codes[:64].T, torch.eye(64, dtype=torch.float64))
    torch.testing.assert_close(codes[:64] @ variant.shift().T, codes[1:65])
    assert math.isclose(codes[0] @ codes[64], -1.0), "the codes repeat (negated) only after 2P = 64 positions"


REFUSED = [
    (["model.learned_positions=false"], r"this circuit takes its positions from constructed position embeddings; allowed: model.learned_positions=true"),
    (["model.d_model=128"], r"model.d_model=128 leaves no room for token codes .* allowed: d_model >= 130"),
    (["variant.beta_duplicate=2"], r"variant.beta_duplicate=2.0 cannot single out the earlier copy .* allowed: variant.beta_duplicate >= \d"),
    (["variant.self_penalty=10"], r"variant.self_penalty=10.0 must push a token off itself .* allowed: variant.self_penalty > \d"),
    (["model.n_layers=1"], r"model.n_layers=1: the circuit needs a first layer and an induction layer"),
]


@pytest.mark.parametrize("overrides, message", REFUSED)
def test_what_the_construction_cannot_honour_is_refused_with_its_limit(make_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config(*CIRCUIT, *overrides))
