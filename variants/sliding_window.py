"""Sliding-window attention (Beltagy et al. 2020, Longformer's local attention; with RoPE as in
Jiang et al. 2023, Mistral 7B): a query sees only the last `window` positions, itself included.

    q_i = R_i W_q x_i        k_j = R_j W_k x_j        v_j = W_v x_j
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over i - window < j <= i
    y_i = W_o sum_j a_ij v_j

One layer cannot reach further back than window - 1 positions; L layers, L (window - 1). The
default window, 32, holds the default copy's distances (at most 16) but not all of induction's
gaps (up to about 60), nor the longer lengths of the length-generalisation analysis.

Training path, O(T * window): the queries go in blocks of `block` (at least window - 1), and a
block attends to its own keys and the window - 1 before them, span = block + window - 1 keys,
each block an independent problem of torch's fused kernel with the band as its additive mask:

    queries  [b block, (b + 1) block)      keys  [b block - window + 1, (b + 1) block)

so a query scores span keys instead of up to T, and no block of the T x T matrix outside the
band is visited. Where the span is no shorter than the sequence, the band saves nothing and the
causal kernel takes the window as a mask. FlexAttention (torch.nn.attention.flex_attention), whose
block masks are made for this, does not train on the CPU in torch 2.13 ("FlexAttention does not
support backward on CPU"), and one path for every device is simpler to trust.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from plugin import ROPE_BASE, Range
from variants import naive
from variants.dot_product import DotProductAttention, fused_attention
from variants.rope import Rotary
from variants.tiling import key_spans

# Queries per block of the banded path, at least window - 1: 64 was the fastest of 32, 64 and 128
# for the default window of 32 at T = 2048 on this project's CPU (smaller blocks make more, smaller
# products; larger ones score more keys outside the window).
QUERY_BLOCK = 64


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

    def block(self) -> int:
        return max(QUERY_BLOCK, self.window - 1)

    def banded(self, seq_len: int) -> bool:
        """Whether the band is shorter than the sequence, so that blocks save work."""
        return self.block() + self.window - 1 < seq_len

    def fused_mask(self, seq_len: int, like: Tensor) -> Tensor | None:
        if not self.banded(seq_len):
            return self.additive_mask(seq_len, like)
        return band_mask(seq_len, self.window, self.block(), like)

    def fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        if not self.banded(q.shape[-2]):
            return fused_attention(q, k, v, mask)
        return banded_attention(q, k, v, mask, self.window - 1)

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


def band_mask(seq_len: int, window: int, block: int, like: Tensor) -> Tensor:
    """0 where key c of block b's span is in query r's window, -inf elsewhere (and before position
    0): (blocks, block, span) in like's dtype."""
    reach = window - 1
    query = torch.arange(block, device=like.device)[:, None]
    key = torch.arange(block + reach, device=like.device)
    gap = query + reach - key  # i - j for query r and key c of the same block
    position = torch.arange(math.ceil(seq_len / block), device=like.device)[:, None, None] * block - reach + key
    seen = (gap >= 0) & (gap < window) & (position >= 0)
    return torch.zeros(seen.shape, dtype=like.dtype, device=like.device).masked_fill(~seen, -math.inf)


def banded_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, reach: int) -> Tensor:
    """softmax_j( q_i . k_j / sqrt(d) + mask ) v_j for q, k, v (batch, heads, T, d), block by block of
    queries, each against its own keys and the `reach` keys before them; mask from band_mask."""
    batch, heads, seq_len, d = q.shape
    blocks, block, _ = mask.shape
    extra = blocks * block - seq_len
    queries = F.pad(q, (0, 0, 0, extra)).reshape(batch * heads, blocks, block, d)
    keys, values = (key_spans(u.reshape(batch * heads, seq_len, d), block, reach, extra) for u in (k, v))
    attended = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask[None])
    return attended.view(batch, heads, blocks * block, d)[:, :, :seq_len]
