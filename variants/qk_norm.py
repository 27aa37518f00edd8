"""QK-norm (Henry et al. 2020, "Query-Key Normalization for Transformers"; Dehghani et al. 2023,
ViT-22B): queries and keys are normalised per head before the dot product, each with a learned
scale, so that a logit cannot grow by growing the projections.

    q_i = R_i g_q ∘ rms(W_q x_i)        k_j = R_j g_k ∘ rms(W_k x_j)        v_j = W_v x_j
    rms(u) = u / sqrt(mean_d u_d^2 + 1e-6)     g_q, g_k: learned per dimension, starting at 1
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over j <= i
    y_i = W_o sum_j a_ij v_j

The normalisation comes before RoPE, so the rotation still makes the scores relative. The scores
are no longer a bilinear form of the stream: no head matrices for composition scores.
"""
from __future__ import annotations

from typing import Annotated

from torch import Tensor, nn

from plugin import ROPE_BASE
from variants.dot_product import DotProductAttention
from variants.rope import Rotary

NORM_EPS = 1e-6


class QKNormAttention(DotProductAttention):
    name = "qk_norm"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)
        self.query_norm = nn.RMSNorm(self.d_head, eps=NORM_EPS)
        self.key_norm = nn.RMSNorm(self.d_head, eps=NORM_EPS)

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = super().queries_keys_values(x)
        return self.query_norm(q), self.key_norm(k), v

    def head_matrices(self) -> None:
        return None
