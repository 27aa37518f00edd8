"""The speed suite's FLOPs follow the FlashAttention convention for causal attention."""
from __future__ import annotations

import pytest
import torch

from bench.speed import REFERENCE, attention_layer, batch_size, count_flops
from variants import VARIANTS
from variants.base import AttentionVariant

CPU = torch.device("cpu")
T = 128


def core_and_projections(variant: str) -> tuple[int, int]:
    layer = attention_layer(variant, T, CPU)
    total, _ = count_flops(layer, T, "forward", CPU)
    projections = sum(2 * batch_size(T) * T * m.in_features * m.out_features for m in layer.modules() if isinstance(m, torch.nn.Linear))
    return total - projections, projections


def test_dot_product_attention_counts_half_of_its_dense_products():
    core, _ = core_and_projections("standard")
    batch, heads, d_head = batch_size(T), 4, 32
    assert core == 4 * batch * heads * T * T * d_head // 2
    assert core_and_projections(REFERENCE)[0] == core


def test_forward_and_backward_is_three_and_a_half_times_the_core_plus_three_times_the_projections():
    layer = attention_layer("standard", T, CPU)
    core, projections = core_and_projections("standard")
    assert count_flops(layer, T, "forward_backward", CPU) == (round(3.5 * core + 3 * projections), "formula")


def test_the_triple_product_costs_one_and_a_half_dot_products():
    assert core_and_projections("triple")[0] == 1.5 * core_and_projections("standard")[0]


def test_a_variants_own_formula_takes_precedence(monkeypatch):
    layer = attention_layer("standard", T, CPU)
    monkeypatch.setattr(type(layer), "attention_flops", lambda self, batch, seq_len: 1000)
    flops, source = count_flops(layer, T, "forward", CPU)
    assert source == "formula" and flops == 1000 + core_and_projections("standard")[1]


# Variants whose explicit path (need_weights) forms more than their math: a window or a second
# window as a dense T x T matrix, or linear attention's weights, which its math never forms.
EXPLICIT_PATH_IS_NOT_THE_MATH = {"sliding_window", "simplicial", "linear"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_shipped_variant_states_its_flops_and_they_match_its_explicit_path(monkeypatch, variant):
    seq_len = 32  # short enough for the constructed circuits' position codes at d_model 128
    layer = attention_layer(variant, seq_len, CPU)
    formula, source = count_flops(layer, seq_len, "forward", CPU)
    assert source == "formula", f"{variant} states no attention_flops beside its equations"
    if variant not in EXPLICIT_PATH_IS_NOT_THE_MATH:
        monkeypatch.setattr(type(layer), "attention_flops", AttentionVariant.attention_flops)
        assert count_flops(layer, seq_len, "forward", CPU) == (formula, "counter, causal half")
