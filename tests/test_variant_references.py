"""Every variant's training path against a naive float64 implementation of its equations, written
here from its docstring and sharing no code with it (flash-linear-attention's rule): outputs, and
gradients of every parameter and of the input, at T = 1, a short T, and a T that is no multiple of
any block size (triple's 16 and 64, sigmoid's 128, simplicial's 16, linear's 64) and longer than
every default window. Memory from torch.empty, empty_like and Tensor.new_empty is filled with NaN,
so that a fast path reading memory it never wrote fails.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from conftest import shipped_variants
from variants import VARIANTS, AttentionVariant
from variants.triple import gram_scores

D_MODEL, N_HEADS, BATCH = 16, 2, 2  # d_head 8
LENGTHS = [1, 13, 150]
MAX_SEQ_LEN = max(LENGTHS)
# A variant whose heads hold more than the default width allows (constructed position codes)
WIDER = {"handcoded_q_induction": 2 * 2 * math.ceil(MAX_SEQ_LEN / 2) + 2 * 8}
PARAMETER_SCALE = 0.3  # every parameter redrawn, so that no zero bias or unit gain hides an error
# RoPE's tables are single precision (variants/rope.py): the variants that rotate agree to about 1e-7
ROTATING = {"standard", "handcoded_induction", "sliding_window", "qk_norm", "sigmoid", "differential", "triple", "simplicial"}


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


# The naive pieces, in float64 --------------------------------------------------------------------


def heads(x: Tensor, weight: Tensor, n_heads: int) -> Tensor:
    """x W^T split into heads: (batch, heads, T, width / heads)."""
    return (x @ weight.T).unflatten(-1, (n_heads, -1)).transpose(1, 2)


def merge(per_head: Tensor) -> Tensor:
    return per_head.transpose(1, 2).flatten(2)


def rotate(u: Tensor, base: float) -> Tensor:
    """RoPE: pair (2p, 2p+1) at position m turned by m base^(-2p/d)."""
    d, seq_len = u.shape[-1], u.shape[-2]
    angle = torch.arange(seq_len, dtype=torch.float64)[:, None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    even, odd = u[..., 0::2], u[..., 1::2]
    turned = torch.stack((even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()), dim=-1)
    return turned.flatten(-2)


def distance(seq_len: int) -> Tensor:
    """i - j as (T, T)"""
    position = torch.arange(seq_len)
    return position[:, None] - position[None, :]


def softmax_over(scores: Tensor, allowed: Tensor) -> Tensor:
    return scores.masked_fill(~allowed, -math.inf).softmax(-1)


def rms(u: Tensor, gain: Tensor | float, eps: float) -> Tensor:
    return u / (u.square().mean(-1, keepdim=True) + eps).sqrt() * gain


def dot_product(x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, n_heads: int, rope_base: float | None,
                bias: Tensor | float = 0.0, allowed: Tensor | None = None) -> Tensor:  # fmt: skip
    """W_o sum_j softmax_j( q_i . k_j / sqrt(d) + bias ) v_j over the allowed j (j <= i by default)."""
    q, k, v = (heads(x, w, n_heads) for w in (w_q, w_k, w_v))
    if rope_base is not None:
        q, k = rotate(q, rope_base), rotate(k, rope_base)
    allowed = distance(x.shape[1]) >= 0 if allowed is None else allowed
    return merge(softmax_over(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias, allowed) @ v) @ w_o.T


# One reference per variant: (the variant, whose parameters it reads; x) -> y ------------------------


def standard(variant, x):
    return dot_product(x, *variant.qkv.weight.chunk(3), variant.out.weight, N_HEADS, 10000.0)


def nope(variant, x):
    return dot_product(x, *variant.qkv.weight.chunk(3), variant.out.weight, N_HEADS, None)


def alibi(variant, x):
    slopes = 2.0 ** (-8.0 * torch.arange(1, N_HEADS + 1, dtype=torch.float64) / N_HEADS)
    return dot_product(x, *variant.qkv.weight.chunk(3), variant.out.weight, N_HEADS, None, -slopes[:, None, None] * distance(x.shape[1]))


def sliding_window(variant, x):
    allowed = (distance(x.shape[1]) >= 0) & (distance(x.shape[1]) < variant.window)
    return dot_product(x, *variant.qkv.weight.chunk(3), variant.out.weight, N_HEADS, 10000.0, allowed=allowed)


def handcoded_induction(variant, x):
    return dot_product(x, variant.query.weight, variant.key.weight, variant.value.weight, variant.out.weight, N_HEADS, 10000.0)


def handcoded_q_induction(variant, x):
    return dot_product(x, variant.query.weight, variant.key.weight, variant.value.weight, variant.out.weight, N_HEADS, None)


def positional(variant, x):
    allowed = distance(x.shape[1]) >= 0
    weights = softmax_over(variant.distance_bias[:, distance(x.shape[1]).clamp(min=0)], allowed)
    return merge(weights @ heads(x, variant.value.weight, N_HEADS)) @ variant.out.weight.T


def qk_norm(variant, x):
    w_q, w_k, w_v = variant.qkv.weight.chunk(3)
    q = rotate(rms(heads(x, w_q, N_HEADS), variant.log_scale.exp()[:, None, None], 1e-6), 10000.0)
    k = rotate(rms(heads(x, w_k, N_HEADS), 1.0, 1e-6), 10000.0)
    weights = softmax_over(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), distance(x.shape[1]) >= 0)
    return merge(weights @ heads(x, w_v, N_HEADS)) @ variant.out.weight.T


def sigmoid(variant, x):
    w_q, w_k, w_v = variant.qkv.weight.chunk(3)
    q, k = (rotate(heads(x, w, N_HEADS), 10000.0) for w in (w_q, w_k))
    weights = torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - math.log(x.shape[1]))
    return merge((weights * (distance(x.shape[1]) >= 0)) @ heads(x, w_v, N_HEADS)) @ variant.out.weight.T


def differential(variant, x):
    w_q, w_k, w_v = variant.qkv.weight.chunk(3)
    q, k = (rotate(heads(x, w, 2 * N_HEADS), 10000.0) for w in (w_q, w_k))  # head h: maps 2h and 2h + 1
    maps = softmax_over(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), distance(x.shape[1]) >= 0)
    lambda_init = 0.8 - 0.6 * math.exp(-0.3 * 0)  # a layer on its own: index 0
    lam = torch.exp(variant.lambda_q1 @ variant.lambda_k1) - torch.exp(variant.lambda_q2 @ variant.lambda_k2) + lambda_init
    weights = maps[:, 0::2] - lam * maps[:, 1::2]
    normalised = (1 - lambda_init) * rms(weights @ heads(x, w_v, N_HEADS), variant.head_norm.weight, 1e-5)
    return merge(normalised) @ variant.out.weight.T


def linear(variant, x):
    w_q, w_k, w_v = variant.qkv.weight.chunk(3)
    q, k = (F.elu(heads(x, w, N_HEADS)) + 1 for w in (w_q, w_k))
    v = heads(x, w_v, N_HEADS)
    state, normaliser, outputs = 0.0, 0.0, []
    for i in range(x.shape[1]):  # the recurrence, one position at a time
        state = state + k[..., i, :, None] * v[..., i, None, :]
        normaliser = normaliser + k[..., i, :]
        outputs.append((q[..., i, :, None] * state).sum(-2) / ((q[..., i, :] * normaliser).sum(-1, keepdim=True) + 2.0**-52))
    return merge(torch.stack(outputs, dim=-2)) @ variant.out.weight.T


def triple(variant, x):
    w_q, w_k, w_r = variant.qkr.weight.chunk(3)
    q, k, r = (rotate(heads(x, w, N_HEADS), 10000.0) for w in (w_q, w_k, w_r))
    vectors = torch.stack(torch.broadcast_tensors(q[..., :, None, :], k[..., None, :, :], r[..., :, None, :]), dim=-2)
    scores = -torch.linalg.det(vectors @ vectors.transpose(-2, -1)) * q.shape[-1] ** -1.5
    weights = softmax_over(scores, distance(x.shape[1]) >= 0)
    return merge(weights @ heads(x, variant.value.weight, N_HEADS)) @ variant.out.weight.T


def rotate_chunks(u: Tensor, base: float) -> Tensor:
    """Chunk l of 3 coordinates at position m turned by m base^(-l / chunks) about its third axis."""
    chunks = u.unflatten(-1, (-1, 3))
    angle = torch.arange(u.shape[-2], dtype=torch.float64)[:, None] * base ** (-torch.arange(chunks.shape[-2], dtype=torch.float64) / chunks.shape[-2])
    first, second, third = chunks.unbind(-1)
    return torch.stack((first * angle.cos() - second * angle.sin(), first * angle.sin() + second * angle.cos(), third), dim=-1).flatten(-2)


def simplicial(variant, x):
    """Query by query: every pair (j, k) of its windows, the determinants of the 3 x 3 chunk matrices."""
    w_q, w_k, w_k2 = variant.query_keys.weight.chunk(3)
    w_v, w_v2 = variant.values.weight.chunk(2)
    q, k, k2 = (rotate_chunks(heads(x, w, N_HEADS), 10000.0) for w in (w_q, w_k, w_k2))
    v, v2 = heads(x, w_v, N_HEADS), heads(x, w_v2, N_HEADS)
    outputs = []
    for i in range(x.shape[1]):
        first, second = range(max(0, i - variant.window + 1), i + 1), range(max(0, i - variant.second_window + 1), i + 1)
        j, kk = (torch.tensor(list(indices)) for indices in zip(*((j, kk) for j in first for kk in second)))
        matrices = torch.stack((q[..., i, None, :].expand(-1, -1, len(j), -1), k[..., j, :], k2[..., kk, :]), dim=-2)
        scores = torch.linalg.det(matrices.unflatten(-1, (-1, 3)).transpose(-3, -2)).sum(-1) / math.sqrt(q.shape[-1])
        outputs.append((scores.softmax(-1)[..., None] * v[..., j, :] * v2[..., kk, :]).sum(-2))
    return merge(torch.stack(outputs, dim=-2)) @ variant.out.weight.T


REFERENCES: dict[str, Callable[[AttentionVariant, Tensor], Tensor]] = {
    "standard": standard, "nope": nope, "alibi": alibi, "sliding_window": sliding_window, "positional": positional,
    "qk_norm": qk_norm, "sigmoid": sigmoid, "differential": differential, "linear": linear, "triple": triple,
    "simplicial": simplicial, "handcoded_induction": handcoded_induction,
    "handcoded_q_induction": handcoded_q_induction,
}  # fmt: skip


def test_every_shipped_variant_has_a_reference():
    assert shipped_variants() <= set(REFERENCES) and set(REFERENCES) <= set(VARIANTS)


def build(name: str) -> AttentionVariant:
    torch.manual_seed(0)
    variant = VARIANTS[name](WIDER.get(name, D_MODEL), N_HEADS, MAX_SEQ_LEN).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in variant.parameters():
            parameter.copy_(PARAMETER_SCALE * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return variant


def output_and_gradients(output: Tensor, variant: AttentionVariant, x: Tensor, grad_output: Tensor) -> dict[str, Tensor]:
    names, parameters = zip(*variant.named_parameters())
    gradients = torch.autograd.grad(output, (x, *parameters), grad_output, allow_unused=True, materialize_grads=True)
    return {"output": output.detach(), "input": gradients[0], **dict(zip(names, gradients[1:]))}


@pytest.mark.parametrize("seq_len", LENGTHS)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_training_path_matches_the_naive_reference(name, seq_len):
    variant = build(name)
    generator = torch.Generator().manual_seed(2)
    width = variant.d_model
    x = torch.randn(BATCH, seq_len, width, generator=generator, dtype=torch.float64, requires_grad=True)
    grad_output = torch.randn(BATCH, seq_len, width, generator=generator, dtype=torch.float64)
    fast = output_and_gradients(variant(x)[0], variant, x, grad_output)
    naive = output_and_gradients(REFERENCES[name](variant, x), variant, x, grad_output)
    tolerance = 1e-6 if name in ROTATING else 1e-10
    for key, expected in naive.items():
        scale = expected.abs().max().item()
        assert scale > 0 or key != "output", "a zero output compares nothing"
        torch.testing.assert_close(fast[key], expected, rtol=tolerance, atol=tolerance * max(scale, 1.0), msg=lambda m: f"{key}: {m}")


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
