"""Sliding-window attention (Beltagy et al. 2020, Longformer's local attention; with RoPE as in
Jiang et al. 2023, Mistral 7B): a query sees only the last `window` positions, itself included.

    q_i = R_i W_q x_i        k_j = R_j W_k x_j        v_j = W_v x_j
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over i - window < j <= i
    y_i = W_o sum_j a_ij v_j

One layer cannot reach further back than window - 1 positions; L layers, L (window - 1). The
default window, 32, holds the default copy's distances (at most 16) but not all of induction's
gaps (up to about 60), nor the longer lengths of the length-generalisation analysis. The
training path is the fused causal kernel with the window as a mask: it still visits every key
block below the diagonal, so its time is that of full causal attention, while attention_flops
counts the O(T * window) products the window leaves.
"""
from __future__ import annotations

from typing import Annotated

from torch import Tensor

from plugin import ROPE_BASE, Range
from variants import naive
from variants.dot_product import DotProductAttention
from variants.rope import Rotary


class SlidingWindowAttention(DotProductAttention):
    name = "sliding_window"
    fixed_mask = True

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        max_seq_len: int,
        *,
        window: Annotated[int, Range(1)] = 32,
        rope_base: Annotated[float, ROPE_BASE] = 10000.0,
    ) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.window = window
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)

    def key_mask(self, distance: Tensor) -> Tensor:
        return distance < self.window

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64: the keys i - window < j <= i."""
        distance = naive.distance(x.shape[1])
        allowed = (distance >= 0) & (distance < self.window)
        return naive.dot_product(x, *self.qkv.weight.chunk(3), self.out.weight, self.n_heads, self.rotary.base, allowed=allowed)

    def attention_flops(self, batch: int, seq_len: int) -> int:
        """4 d_head per (query, key) pair in the window: q . k and a v."""
        reach = min(seq_len, self.window)
        pairs = reach * (reach + 1) // 2 + (seq_len - reach) * self.window
        return 4 * batch * self.n_heads * self.d_head * pairs
