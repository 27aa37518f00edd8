"""Position-only attention, a control: scores depend on the distance i - j alone, through a learned
bias per head and distance, and never on content.

    v_j = W_v x_j
    a_ij = softmax_j( b_h(i - j) )      over j <= i,   b_h: one learned number per head and distance
    y_i = W_o sum_j a_ij v_j

Every sequence gets the same weights, so an attention-only model built of it (no MLP, no layer
norm: the defaults) is a fixed linear mixing of token embeddings by position. Whatever it solves is solvable by position alone: it
passes the fixed-split copy (the answer always lies seq_len / 2 back) and must fail any task whose
answer lies at a content-dependent place (variable-length copy, induction at random gaps,
associative recall). The report marks it as a control.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from variants import naive
from variants.dot_product import DotProductAttention


class PositionalAttention(DotProductAttention):
    name = "positional"
    is_control = True
    content = False

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.distance_bias = nn.Parameter(torch.zeros(n_heads, max_seq_len))
        self.distance_bias.no_weight_decay = True  # a bias table, not a matrix to shrink

    def score_bias(self, distance: Tensor) -> Tensor:
        return self.distance_bias[:, distance.clamp(min=0)]

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64: b_h(i - j) read from the table for every j <= i."""
        distance = naive.distance(x.shape[1])
        weights = naive.softmax_over(self.distance_bias[:, distance.clamp(min=0)], distance >= 0)
        return naive.attend(weights, x, self.value.weight, self.out.weight, self.n_heads)
