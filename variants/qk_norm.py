"""QK-norm (Henry et al. 2020, "Query-Key Normalization for Transformers"; Dehghani et al. 2023,
ViT-22B): queries and keys are normalised per head before the dot product, and a learned scale per
head, not the projections' norms, sets how sharp the head can be.

    q_i = R_i g_h rms(W_q x_i)        k_j = R_j rms(W_k x_j)        v_j = W_v x_j
    rms(u) = u / sqrt(mean_d u_d^2 + 1e-6)        g_h = exp(s_h), s_h learned per head, from 0
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over j <= i
    y_i = W_o sum_j a_ij v_j

rms(q) . rms(k) / sqrt(d_head) = sqrt(d_head) cos(q, k), so a logit lies within g_h sqrt(d_head) of
0: Henry et al.'s learned scale g in place of 1 / sqrt(d_head), with the RMS, which is the L2 norm
over sqrt(d_head), in place of the L2 norm (Dehghani et al. normalise with LayerNorm and learn a
scale per dimension; one per head keeps the normalisation to one reduction and one product per
vector, folded into the row's factor). The normalisation comes
before RoPE, so the rotation still makes the scores relative. The scores are no longer a bilinear
form of the stream: no head matrices for composition scores.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import Tensor, nn

from plugin import ROPE_BASE
from variants import naive
from variants.dot_product import DotProductAttention
from variants.rope import Rotary

NORM_EPS = 1e-6


def rms_normalised(u: Tensor, scale: Tensor | float = 1.0) -> Tensor:
    """scale u / sqrt(mean u^2 + eps) over the last dimension, a scale (..., 1) folded into the row's factor."""
    mean_square = torch.linalg.vector_norm(u, dim=-1, keepdim=True).square() / u.shape[-1]
    return u * (torch.rsqrt(mean_square + NORM_EPS) * scale)


class QKNormAttention(DotProductAttention):
    name = "qk_norm"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)
        self.log_scale = nn.Parameter(torch.zeros(n_heads))

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = super().queries_keys_values(x)
        return rms_normalised(q, self.log_scale.exp()[:, None, None]), rms_normalised(k), v

    def head_matrices(self) -> None:
        return None

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64."""
        w_q, w_k, w_v = self.qkv.weight.chunk(3)
        q = naive.rotate(naive.rms(naive.heads(x, w_q, self.n_heads), self.log_scale.exp()[:, None, None], NORM_EPS), self.rotary.base)
        k = naive.rotate(naive.rms(naive.heads(x, w_k, self.n_heads), 1.0, NORM_EPS), self.rotary.base)
        weights = naive.softmax_over(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), naive.causal(x.shape[1]))
        return naive.attend(weights, x, w_v, self.out.weight, self.n_heads)
