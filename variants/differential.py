"""Differential attention (Ye et al. 2024, "Differential Transformer"): each head subtracts a second
softmax map from the first, scaled by a learned lambda, cancelling attention that both maps put
on irrelevant keys; each head's output is then normalised.

    [q1_i; q2_i] = R_i W_q x_i      [k1_j; k2_j] = R_j W_k x_j      (halves of d_head / 2)      v_j = W_v x_j
    a_ij = softmax_j( q1_i . k1_j / sqrt(d_head / 2) ) - lambda softmax_j( q2_i . k2_j / sqrt(d_head / 2) )   j <= i
    lambda = exp(l_q1 . l_k1) - exp(l_q2 . l_k2) + lambda_init,    l_*: learned (d_head / 2), ~ N(0, 0.1^2)
    lambda_init = 0.8 - 0.6 exp(-0.3 l)                            l: the layer's index from 0
    o_i = (1 - lambda_init) g ∘ rms( sum_j a_ij v_j )              rms over a head's d_head, g learned
    y_i = W_o o_i

As in the paper's code (microsoft/unilm, Diff-Transformer), a layer has one lambda, and a
differential head is two half-width query/key pairs sharing a full-width value, so the
projections have the shapes of standard attention's at the same n_heads. A row of weights sums to
1 - lambda and may be negative (weight_rows = "difference"). Training path: both maps in one call
of the fused kernel (2 n_heads heads, each map's head reading its value; q and k zero-padded to
the value's width, which the kernel needs), then the difference of the outputs.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugin import ROPE_BASE
from variants import naive
from variants.dot_product import DotProductAttention, fused_attention
from variants.rope import Rotary

NORM_EPS = 1e-5
LAMBDA_SPREAD = 0.1


class DifferentialAttention(DotProductAttention):
    name = "differential"
    weight_rows = "difference"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        if self.d_head % 4 != 0:
            allowed = [str(h) for h in range(1, d_model + 1) if d_model % (4 * h) == 0]
            raise ValueError(
                f"variant=differential splits each head into two rotated halves, so d_head must be a multiple of 4; got "
                f"d_head={self.d_head} (model.d_model={d_model} / model.n_heads={n_heads}); allowed n_heads: {', '.join(allowed)}"
            )
        half = self.d_head // 2
        self.rotary = Rotary(half, max_seq_len, rope_base)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (nn.Parameter(LAMBDA_SPREAD * torch.randn(half)) for _ in range(4))
        self.head_norm = nn.RMSNorm(self.d_head, eps=NORM_EPS)
        self.layer = 0  # the block's index, which lambda_init depends on; a layer on its own is the first

    def construct(self, model: nn.Module, layer: int) -> None:
        self.layer = layer

    @property
    def lambda_init(self) -> float:
        return 0.8 - 0.6 * math.exp(-0.3 * self.layer)

    def difference_scale(self) -> Tensor:
        """lambda"""
        return torch.exp(self.lambda_q1 @ self.lambda_k1) - torch.exp(self.lambda_q2 @ self.lambda_k2) + self.lambda_init

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q and k as 2 n_heads half-width heads (head h's two maps at 2h and 2h + 1), v as n_heads."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        halves = (t.unflatten(-1, (2 * self.n_heads, -1)).transpose(1, 2) for t in (q, k))
        return *halves, self.split_heads(v)

    def normalise(self, scores: Tensor) -> Tensor:
        maps = scores.softmax(dim=-1).unflatten(1, (self.n_heads, 2))
        return maps[:, :, 0] - self.difference_scale() * maps[:, :, 1]

    def fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        # the fused kernel takes one width for q, k and v (else torch falls back to forming the weights):
        # q and k padded with zeros to d_head, which leaves every q . k as it is
        half = q.shape[-1]
        q, k = (F.pad(t, (0, half)) for t in (q, k))
        both = fused_attention(q, k, v.repeat_interleave(2, dim=1), mask, scale=half**-0.5).unflatten(1, (self.n_heads, 2))
        return both[:, :, 0] - self.difference_scale() * both[:, :, 1]

    def head_outputs(self, attended: Tensor) -> Tensor:
        return (1 - self.lambda_init) * self.head_norm(attended)

    def attention_flops(self, batch: int, seq_len: int) -> int:
        """Both maps' q . k (d_head / 2 each) and one product of their difference with v, the causal half:
        as many as dot-product attention's. (The training path pads q and k to d_head and multiplies
        each map by v, twice these; its share of the peak is counted on these.)"""
        return 2 * batch * self.n_heads * seq_len**2 * self.d_head

    def head_matrices(self) -> None:
        return None

    def rotary_queries_and_keys(self, x: Tensor) -> None:
        return None  # two half-width maps per head: not the (q, k) of one head that the analysis reads

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64: head h's two maps are maps 2h and 2h + 1."""
        w_q, w_k, w_v = self.qkv.weight.chunk(3)
        q, k = (naive.rotate(naive.heads(x, w, 2 * self.n_heads), self.rotary.base) for w in (w_q, w_k))
        maps = naive.softmax_over(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), naive.causal(x.shape[1]))
        lambda_init = 0.8 - 0.6 * math.exp(-0.3 * self.layer)
        lam = torch.exp(self.lambda_q1 @ self.lambda_k1) - torch.exp(self.lambda_q2 @ self.lambda_k2) + lambda_init
        attended = (maps[:, 0::2] - lam * maps[:, 1::2]) @ naive.heads(x, w_v, self.n_heads)
        return naive.merge((1 - lambda_init) * naive.rms(attended, self.head_norm.weight, NORM_EPS)) @ self.out.weight.T
