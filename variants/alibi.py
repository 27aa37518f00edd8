"""ALiBi (Press et al. 2022, "Train Short, Test Long"): no rotation; head h of H penalises
distance linearly, with slopes a geometric sequence.

    q_i = W_q x_i        k_j = W_k x_j        v_j = W_v x_j
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) - m_h (i - j) )      over j <= i
    m_h = max_slope 2^(-8h / H),   h = 1 .. H
    y_i = W_o sum_j a_ij v_j
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from plugin import POSITIVE
from variants import naive
from variants.dot_product import DotProductAttention


class ALiBiAttention(DotProductAttention):
    name = "alibi"
    fixed_mask = True

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, max_slope: Annotated[float, POSITIVE] = 1.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.max_slope = max_slope
        self.register_buffer("slopes", max_slope * 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads), persistent=False)

    def score_bias(self, distance: Tensor) -> Tensor:
        return -self.slopes[:, None, None] * distance

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64, with m_h computed afresh from max_slope."""
        slopes = self.max_slope * 2.0 ** (-8.0 * torch.arange(1, self.n_heads + 1, dtype=torch.float64) / self.n_heads)
        bias = -slopes[:, None, None] * naive.distance(x.shape[1])
        return naive.dot_product(x, *self.qkv.weight.chunk(3), self.out.weight, self.n_heads, None, bias)
