"""Every registered variant's training path against its own naive float64 reference
(``AttentionVariant.reference``, written in the variant's file from its docstring, from the pieces
of variants/naive.py, and sharing no code with the fast path: flash-linear-attention's rule): outputs, and
gradients of every parameter and of the input, at T = 1, a short T, and a T that is no multiple of
any block size (triple's 16 and 64, sigmoid's 128, simplicial's 16, linear's 64) and longer than
every default window. Memory from torch.empty, empty_like and Tensor.new_empty is filled with NaN,
so that a fast path reading memory it never wrote fails.
"""
from __future__ import annotations

import functools
import importlib
import math

import pytest
import torch
from torch import Tensor

from variants import VARIANTS, AttentionVariant
from variants.dot_product import DotProductAttention
from variants.rope import Rotary
from variants.tiling import Tiling
from variants.triple import gram_scores

D_MODEL, N_HEADS, BATCH = 16, 2, 2  # d_head 8
LENGTHS = [1, 13, 150]
MAX_SEQ_LEN = max(LENGTHS)
PARAMETER_SCALE = 0.3  # every parameter redrawn, so that no zero bias or unit gain hides an error


@pytest.fixture(autouse=True)
def nan_filled_empty(monkeypatch):
    """torch.empty, torch.empty_like and Tensor.new_empty hand out floating memory full of NaN."""
    for owner, name in ((torch, "empty"), (torch, "empty_like"), (torch.Tensor, "new_empty")):
        allocate = getattr(owner, name)

        @functools.wraps(allocate)
        def allocate_nan(*args, _allocate=allocate, **kwargs):
            tensor = _allocate(*args, **kwargs)
            return tensor.fill_(math.nan) if tensor.is_floating_point() else tensor

        monkeypatch.setattr(owner, name, allocate_nan)


def test_uninitialised_memory_reads_as_nan():
    like = torch.zeros(3, dtype=torch.float64)
    for tensor in (torch.empty(3), torch.empty_like(like), like.new_empty(3)):
        assert tensor.isnan().all()


def rotates(variant: AttentionVariant) -> bool:
    """RoPE's tables are single precision (variants/rope.py): a variant that rotates agrees with its
    float64 reference to about 1e-7, any other to about 1e-12."""
    return any(isinstance(module, Rotary) for module in variant.modules())


def build(name: str, **options) -> AttentionVariant:
    torch.manual_seed(0)
    variant_class = VARIANTS[name]
    d_model = max(D_MODEL, math.ceil(variant_class.least_d_model(MAX_SEQ_LEN) / N_HEADS) * N_HEADS)
    variant = variant_class(d_model, N_HEADS, MAX_SEQ_LEN, **options).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in variant.parameters():
            parameter.copy_(PARAMETER_SCALE * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return variant


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_registered_variant_defines_a_working_reference(name):
    variant = build(name)
    y = variant.reference(torch.randn(BATCH, 5, variant.d_model, dtype=torch.float64))
    assert y.shape == (BATCH, 5, variant.d_model) and y.dtype == torch.float64 and y.isfinite().all()


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
    variant = LearnedDecay(D_MODEL, N_HEADS, MAX_SEQ_LEN).double()
    assert_training_path_matches_the_reference(variant, seq_len)


def test_a_dot_product_variant_that_changes_more_than_a_score_mod_must_write_its_reference():
    class Renormalised(DotProductAttention):  # not registered: no name
        def normalise(self, scores: Tensor) -> Tensor:
            return scores.softmax(-1).square()

    with pytest.raises(NotImplementedError, match="^Renormalised overrides normalise: .* write its reference"):
        Renormalised(D_MODEL, N_HEADS, 8).reference(torch.zeros(1, 2, D_MODEL, dtype=torch.float64))


def output_and_gradients(output: Tensor, variant: AttentionVariant, x: Tensor, grad_output: Tensor) -> dict[str, Tensor]:
    names, parameters = zip(*variant.named_parameters())
    gradients = torch.autograd.grad(output, (x, *parameters), grad_output, allow_unused=True, materialize_grads=True)
    return {"output": output.detach(), "input": gradients[0], **dict(zip(names, gradients[1:]))}


def assert_training_path_matches_the_reference(variant: AttentionVariant, seq_len: int) -> None:
    generator = torch.Generator().manual_seed(2)
    width = variant.d_model
    x = torch.randn(BATCH, seq_len, width, generator=generator, dtype=torch.float64, requires_grad=True)
    grad_output = torch.randn(BATCH, seq_len, width, generator=generator, dtype=torch.float64)
    fast = output_and_gradients(variant(x)[0], variant, x, grad_output)
    naive = output_and_gradients(variant.reference(x), variant, x, grad_output)
    tolerance = 1e-6 if rotates(variant) else 1e-10
    for key, expected in naive.items():
        scale = expected.abs().max().item()
        assert scale > 0 or key != "output", "a zero output compares nothing"
        torch.testing.assert_close(fast[key], expected, rtol=tolerance, atol=tolerance * max(scale, 1.0), msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("seq_len", LENGTHS)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_training_path_matches_the_naive_reference(name, seq_len):
    assert_training_path_matches_the_reference(build(name), seq_len)


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
