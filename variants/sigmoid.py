"""Sigmoid attention (Ramapuram et al. 2024, "Theory, Analysis, and Best Practices for Sigmoid
Self-Attention"): each weight is a sigmoid of its own score, with no normalisation over the keys,
and a bias -log T, so that at the start, with scores near 0, a weight is about 1 / T and a row sums
to at most about 1, as softmax's does (without it, rows of large weights make training unstable).

    q_i = R_i W_q x_i        k_j = R_j W_k x_j        v_j = W_v x_j
    a_ij = sigmoid( q_i . k_j / sqrt(d_head) - log T )      over j <= i, T the sequence's length
    y_i = W_o sum_j a_ij v_j

Weights lie in [0, 1] and a row may sum to anything (weight_rows = "gates"). Training path: blocks
of queries, each reading only the keys up to its last query (the blocks above the diagonal are
skipped) and recomputed in backward instead of kept (activation checkpointing), so no T x T tensor
is stored for backward, as in the paper's FlashSigmoid.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from plugin import ROPE_BASE
from variants import naive
from variants.dot_product import DotProductAttention
from variants.rope import Rotary

QUERY_BLOCK = 128


class SigmoidAttention(DotProductAttention):
    name = "sigmoid"
    fixed_mask = True
    weight_rows = "gates"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)

    def score_bias(self, distance: Tensor) -> Tensor:
        return torch.full((), -math.log(distance.shape[0]), device=distance.device)

    def normalise(self, scores: Tensor) -> Tensor:
        return torch.sigmoid(scores)

    def fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        seq_len = q.shape[-2]
        blocks = []
        for start in range(0, seq_len, QUERY_BLOCK):
            end = min(start + QUERY_BLOCK, seq_len)
            block = (q[..., start:end, :], k[..., :end, :], v[..., :end, :], mask[..., start:end, :end])
            blocks.append(checkpoint(gated_sum, *block, use_reentrant=False))
        return torch.cat(blocks, dim=-2)

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64."""
        w_q, w_k, w_v = self.qkv.weight.chunk(3)
        q, k = (naive.rotate(naive.heads(x, w, self.n_heads), self.rotary.base) for w in (w_q, w_k))
        weights = torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - math.log(x.shape[1]))
        return naive.attend(weights * naive.causal(x.shape[1]), x, w_v, self.out.weight, self.n_heads)


def gated_sum(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """sum_j sigmoid( q_i . k_j / sqrt(d) + mask_ij ) v_j"""
    return torch.sigmoid(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + mask) @ v
