"""The naive references beyond each variant's own (which bench/contract/test_variants.py checks over
every registered variant): the default reference a score or mask mod inherits, its refusal where a
variant changes more, references that follow their options, the blocked training paths across many
blocks, and triple against simplicial."""
from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch import Tensor

from bench.contract.test_variants import (
    LENGTHS,
    REFERENCE_D_MODEL,
    REFERENCE_N_HEADS,
    assert_training_path_matches_the_reference,
    build,
    nan_filled_empty,  # noqa: F401  (autouse here too: fast paths may not read unwritten memory)
)
from variants import VARIANTS
from variants.dot_product import DotProductAttention
from variants.rope import Rotary
from variants.tiling import Tiling
from variants.triple import gram_scores

MAX_SEQ_LEN = max(LENGTHS)


class LearnedDecay(DotProductAttention):
    """A score mod and a mask mod on RoPE, as a user's variant: b_h(i - j) = -r_h (i - j), keys within 40
    positions. Not registered (no name): it inherits DotProductAttention's default reference."""

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.rotary = Rotary(self.d_head, max_seq_len)
        self.rates = torch.nn.Parameter(torch.ones(n_heads))

    def score_bias(self, distance: Tensor) -> Tensor:
        return -self.rates[:, None, None] * distance

    def key_mask(self, distance: Tensor) -> Tensor:
        return distance < 40


@pytest.mark.parametrize("seq_len", LENGTHS)
def test_a_variant_that_changes_only_the_score_mod_gets_a_reference_for_free(seq_len):
    torch.manual_seed(0)
    variant = LearnedDecay(REFERENCE_D_MODEL, REFERENCE_N_HEADS, MAX_SEQ_LEN).double()
    assert_training_path_matches_the_reference(variant, seq_len)


def test_a_dot_product_variant_that_changes_more_than_a_score_mod_must_write_its_reference():
    class Renormalised(DotProductAttention):  # not registered: no name
        def normalise(self, scores: Tensor) -> Tensor:
            return scores.softmax(-1).square()

    with pytest.raises(NotImplementedError, match="^Renormalised overrides normalise: .* write its reference"):
        Renormalised(REFERENCE_D_MODEL, REFERENCE_N_HEADS, 8).reference(torch.zeros(1, 2, REFERENCE_D_MODEL, dtype=torch.float64))


@pytest.mark.parametrize(
    "name, options",
    [("alibi", {"max_slope": 0.5}), ("triple", {"learnable_temperature": True}), ("simplicial", {"score": "trilinear"})],
)
def test_a_reference_follows_the_variants_options(name, options):
    assert_training_path_matches_the_reference(build(name, **options), LENGTHS[1])


def test_triple_is_minus_the_square_of_simplicials_determinant_with_the_second_key_at_the_query():
    # in a 3-dimensional head, with the second window 1 wide (k' = r_i), by each variant's own scoring code
    torch.manual_seed(0)
    simplicial_head = VARIANTS["simplicial"](3, 1, 16, second_window=1).double()
    generator = torch.Generator().manual_seed(3)
    q, k, r = (torch.randn(1, 1, 10, 3, generator=generator, dtype=torch.float64) for _ in range(3))
    determinant = (simplicial_head.pair_queries(q, r)[..., 0, :] @ k.transpose(-2, -1)) * math.sqrt(3)
    explicit = torch.linalg.det(torch.stack(torch.broadcast_tensors(q[..., :, None, :], k[..., None, :, :], r[..., :, None, :]), dim=-2))
    torch.testing.assert_close(determinant, explicit)
    torch.testing.assert_close(gram_scores(q, k, r), -determinant.square())


@pytest.mark.parametrize(
    "name, module, constant, small",
    [
        ("positional", "variants.positional", "QUERY_BLOCK", 16),
        ("sigmoid", "variants.sigmoid", "TILING", Tiling(query_block=16, tile_elements=0, min_rows=1)),
        ("sliding_window", "variants.sliding_window", "QUERY_BLOCK", 40),
    ],
)
def test_a_blocked_training_path_matches_its_reference_across_many_blocks(monkeypatch, name, module, constant, small):
    """At T = 150 with blocks far shorter than it (and one row per tile), so that every block boundary
    and the last, partial block are crossed."""
    monkeypatch.setattr(importlib.import_module(module), constant, small)
    assert_training_path_matches_the_reference(build(name), LENGTHS[-1])
