"""Sigmoid attention (Ramapuram et al. 2024, "Theory, Analysis, and Best Practices for Sigmoid
Self-Attention"): each weight is a sigmoid of its own score, with no normalisation over the keys,
and a bias -log T, so that at the start, with scores near 0, a weight is about 1 / T and a row sums
to at most about 1, as softmax's does (without it, rows of large weights make training unstable).

    q_i = R_i W_q x_i        k_j = R_j W_k x_j        v_j = W_v x_j
    a_ij = sigmoid( q_i . k_j / sqrt(d_head) - log T )      over j <= i, T the sequence's length
    y_i = W_o sum_j a_ij v_j

Weights lie in [0, 1] and a row may sum to anything (weight_rows = "gates"). Training path, as the
paper's FlashSigmoid: a custom autograd function over tiles of (batch*head rows, query block)
(variants/tiling.py) that skips the key blocks above the diagonal and recomputes a tile's gates in
backward instead of keeping them, so no T x T tensor is stored. With no normalisation there is no
row statistic to carry: forward is two products and a sigmoid per tile; backward, with
g = d loss / d y_i, is

    d v_j = sum_i a_ij g_i      d s_ij = (g_i . v_j) a_ij (1 - a_ij)      d q_i = sum_j d s_ij k_j      d k_j = sum_i d s_ij q_i

five products, as many as flash attention's backward. FlexAttention cannot express it (its
normalisation is always a softmax) and does not train on the CPU in torch 2.13.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from plugin import ROPE_BASE
from variants import naive
from variants.dot_product import DotProductAttention
from variants.rope import Rotary
from variants.tiling import Tiling, future_mask, tile_view

# the fastest of query blocks 64, 128 and 256, tiles of 2^16 to 2^22 scores and 1 to 32 rows, at T = 2048
# (2 cores, AVX-512); a sequence of up to 128 is one block: at the zoo's 32 to 64 the second block cost
# more than it skipped
TILING = Tiling(query_block=128, tile_elements=1 << 20, min_rows=16, min_query_block=128)


class SigmoidAttention(DotProductAttention):
    name = "sigmoid"
    fixed_mask = True
    weight_rows = "gates"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)

    def score_bias(self, distance: Tensor) -> Tensor:
        return torch.full((), gate_bias(distance.shape[0]), device=distance.device)

    def normalise(self, scores: Tensor) -> Tensor:
        return torch.sigmoid(scores)

    def fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        batch, heads, seq_len, d = q.shape
        q = q * d**-0.5
        rows = (u.reshape(batch * heads, seq_len, d) for u in (q, k, v))
        return GatedSum.apply(*rows, gate_bias(seq_len)).view(batch, heads, seq_len, d)

    def fused_mask(self, seq_len: int, like: Tensor) -> None:
        return None  # the kernel adds its bias, -log T, itself

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64."""
        w_q, w_k, w_v = self.qkv.weight.chunk(3)
        q, k = (naive.rotate(naive.heads(x, w, self.n_heads), self.rotary.base) for w in (w_q, w_k))
        weights = torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - math.log(x.shape[1]))
        return naive.attend(weights * naive.causal(x.shape[1]), x, w_v, self.out.weight, self.n_heads)


def gate_bias(seq_len: int) -> float:
    """-log T: a weight of about 1 / T where the score is near 0."""
    return -math.log(seq_len)


class GatedSum(torch.autograd.Function):
    """sum_(j <= i) sigmoid( q_i . k_j + bias ) v_j for q, k, v (batch*heads, T, d), q already scaled.

    The bias rides in the scores' product as one more coordinate, q'_i = [q_i, 1] and
    k'_j = [k_j, bias], so a tile's gates take one product and one sigmoid, not a third pass."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: float) -> Tensor:
        batch_heads, seq_len, _ = q.shape
        block = TILING.block(seq_len)
        future, scores = future_mask(block, q), TILING.buffer(q, batch_heads, seq_len, block)
        queries, keys = with_bias_coordinate(q, k, bias)
        out = torch.empty_like(v)
        for rows, start, end in TILING.tiles(batch_heads, seq_len, block):
            gates = causal_gates(queries[rows, start:end], keys[rows, :end], future, scores)
            torch.matmul(gates, v[rows, :end], out=out[rows, start:end])
        ctx.save_for_backward(q, k, v)
        ctx.bias = bias
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v = ctx.saved_tensors
        batch_heads, seq_len, d = q.shape
        block = TILING.block(seq_len)
        future = future_mask(block, q)
        scores, products = (TILING.buffer(q, batch_heads, seq_len, block) for _ in range(2))
        queries, keys = with_bias_coordinate(q, k, ctx.bias)
        grad_q = torch.empty_like(q)
        # the key-side gradients accumulate transposed, (BH, d, T), so that their products write long rows
        grad_k_t, grad_v_t = q.new_zeros(batch_heads, d, seq_len), v.new_zeros(batch_heads, v.shape[-1], seq_len)
        for rows, start, end in TILING.tiles(batch_heads, seq_len, block):
            gates = causal_gates(queries[rows, start:end], keys[rows, :end], future, scores)
            tile_grad = grad_out[rows, start:end]
            grad_v_t[rows, :, :end] += tile_grad.transpose(-2, -1) @ gates
            grad_scores = torch.matmul(tile_grad, v[rows, :end].transpose(-2, -1), out=tile_view(products, *gates.shape))
            torch.ops.aten.sigmoid_backward.grad_input(grad_scores, gates, grad_input=grad_scores)  # (g . v) a (1 - a), one pass
            torch.matmul(grad_scores, k[rows, :end], out=grad_q[rows, start:end])
            grad_k_t[rows, :, :end] += q[rows, start:end].transpose(-2, -1) @ grad_scores
        return grad_q, grad_k_t.transpose(-2, -1), grad_v_t.transpose(-2, -1), None


def with_bias_coordinate(q: Tensor, k: Tensor, bias: float) -> tuple[Tensor, Tensor]:
    """[q_i, 1] and [k_j, bias]: (rows, T, d + 1) each, whose products are q_i . k_j + bias."""
    rows, seq_len, _ = q.shape
    return torch.cat((q, q.new_ones(rows, seq_len, 1)), dim=-1), torch.cat((k, k.new_full((rows, seq_len, 1), bias)), dim=-1)


def causal_gates(q: Tensor, k: Tensor, future: Tensor, buffer: Tensor) -> Tensor:
    """sigmoid( q_i . k_j ) for a tile's queries q (rows, n, d), the last n of the keys k (rows, e, d),
    0 for j > i: (rows, n, e), written into buffer."""
    n, keys = q.shape[1], k.shape[1]
    gates = torch.matmul(q, k.transpose(-2, -1), out=tile_view(buffer, q.shape[0], n, keys))
    gates[..., keys - n :].add_(future[:n, :n])
    return gates.sigmoid_()
