"""Standard attention: multi-head causal dot-product attention with RoPE on queries and keys.

    q_i = R_i W_q x_i        k_j = R_j W_k x_j        v_j = W_v x_j
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over j <= i
    y_i = W_o sum_j a_ij v_j

Training uses torch's fused ``scaled_dot_product_attention``, which never forms a_ij; the
weights are computed explicitly only when asked for.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch.nn.functional as F
from torch import Tensor, nn

from plugin import ROPE_BASE
from variants.base import AttentionVariant, HeadMatrices, causal_softmax
from variants.rope import Rotary


class StandardAttention(AttentionVariant):
    name = "standard"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        q, k, v = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = self.rotary(q), self.rotary(k)
        if not need_weights:
            return self.out(self.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True))), None
        weights = causal_softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head))
        return self.out(self.merge_heads(weights @ v)), weights

    def head_matrices(self) -> HeadMatrices:
        return HeadMatrices.from_linear(*self.qkv.weight.chunk(3), self.out.weight, self.n_heads)

    def rotary_queries_and_keys(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        q, k, _ = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        return q, k, self.rotary(q), self.rotary(k)
