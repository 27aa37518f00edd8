"""Standard attention: multi-head causal dot-product attention with RoPE on queries and keys.

    q_i = R_i W_q x_i        k_j = R_j W_k x_j        v_j = W_v x_j
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over j <= i
    y_i = W_o sum_j a_ij v_j

Training uses torch's fused ``scaled_dot_product_attention``, which never forms a_ij; the
weights are computed explicitly only when asked for (variants/dot_product.py holds both paths).
"""
from __future__ import annotations

from typing import Annotated

from torch import Tensor

from plugin import ROPE_BASE
from variants import naive
from variants.dot_product import DotProductAttention
from variants.rope import Rotary


class StandardAttention(DotProductAttention):
    name = "standard"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64."""
        return naive.dot_product(x, *self.qkv.weight.chunk(3), self.out.weight, self.n_heads, self.rotary.base)
