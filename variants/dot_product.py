"""Dot-product attention, the base of every variant that differs from it only in a score bias, a
key mask, its queries and keys or its normalisation (attention-gym's score_mod and mask_mod): the
projections, the head split, RoPE and both paths live here, and a variant states what it changes.

    q_i = R_i W_q x_i      k_j = R_j W_k x_j      v_j = W_v x_j      (R: RoPE, where a variant sets one)
    s_ij = q_i . k_j / sqrt(d_head) + b_h(i - j)                     for the keys j <= i the mask lets through
    a_ij = softmax_j( s_ij )
    y_i = W_o sum_j a_ij v_j

A variant defines, where it differs:
    score_bias(distance)     b_h from the distance i - j (T, T): (heads or 1, T, T) (none by default)
    key_mask(distance)       which keys j <= i a query sees (bool, T, T) (all of them by default)
    fixed_mask = True        both depend on the distance alone: the mask is kept for the next call
    content = False          no queries or keys: s_ij = b_h(i - j) alone (a position-only control)
    queries_keys_values      q and k before the rotation (e.g. normalised), and v
    normalise                scores -> weights on the explicit path (softmax here)
    fused, fused_mask        the training path for q, k, v and the mask it takes (the additive mask here)
    head_outputs             what each head makes of sum_j a_ij v_j before W_o (the identity here)
    reference                the naive float64 output (AttentionVariant's contract); by default the
                             equations above from score_bias, key_mask and RoPE's base, which describe
                             a variant that changes nothing else; one that overrides a method of
                             BEYOND_SCORE_MOD writes its own

Training path: torch's fused kernel, which never forms a_ij: scaled_dot_product_attention with
is_causal where a variant adds no bias and no mask; otherwise b_h as an additive mask, -inf where a
key is masked. The public function refuses a mask together with is_causal and would then visit the
key blocks above the diagonal as well; on the CPU its flash kernel is called with both, and skips
them (plugin/compat.py). Explicit path (need_weights): s_ij formed, normalised and multiplied by v.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugin.compat import cpu_causal_attention_with_mask
from variants import naive
from variants.base import AttentionVariant, HeadMatrices, causal_weights
from variants.rope import Rotary

# Methods past attention-gym's score_mod and mask_mod: a variant that overrides one of them is not
# described by score_bias and key_mask alone, and the default reference refuses it.
BEYOND_SCORE_MOD = ("queries_keys_values", "normalise", "fused", "fused_mask", "head_outputs", "forward")


class DotProductAttention(AttentionVariant):
    content: ClassVar[bool] = True
    # attention-gym's score_mod and mask_mod, as methods of the distance i - j (T, T); None: none
    score_bias: Callable[[Tensor], Tensor] | None = None
    key_mask: Callable[[Tensor], Tensor] | None = None
    # True where both depend on the distance alone (no parameters): the mask is then kept from one
    # call to the next of the same length, since building it costs several passes over heads x T x T
    fixed_mask: ClassVar[bool] = False

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        if self.content:
            self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        else:
            self.value = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.rotary: Rotary | None = None
        self.kept_mask: tuple[tuple, Tensor] | None = None  # ((T, dtype, device), mask) where fixed_mask

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k before the rotation, and v: each (batch, heads, T, d_head)."""
        q, k, v = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        return q, k, v

    def normalise(self, scores: Tensor) -> Tensor:
        return scores.softmax(dim=-1)

    def fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        return fused_attention(q, k, v, mask)

    def head_outputs(self, attended: Tensor) -> Tensor:
        return attended

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        batch, seq_len, _ = x.shape
        if not self.content:  # the weights are the same for every sequence: formed once, on both paths
            weights = self.normalise(self.additive_mask(seq_len, x))
            attended = weights @ self.split_heads(self.value(x))
            return self.out(self.merge_heads(attended)), weights.expand(batch, -1, -1, -1) if need_weights else None
        q, k, v = self.queries_keys_values(x)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        if not need_weights:
            return self.out(self.merge_heads(self.head_outputs(self.fused(q, k, v, self.fused_mask(seq_len, x))))), None
        mask = self.additive_mask(seq_len, x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        weights = causal_weights(scores if mask is None else scores + mask, self.normalise)
        return self.out(self.merge_heads(self.head_outputs(weights @ v))), weights

    def attention_flops(self, batch: int, seq_len: int) -> int:
        """q_i . k_j and a_ij v_j, 2 d_head FLOPs each per (query, key) pair, over the causal half: the
        FlashAttention convention, 4 B H T^2 d_head / 2."""
        return 2 * batch * self.n_heads * seq_len**2 * self.d_head

    def fused_mask(self, seq_len: int, like: Tensor) -> Tensor | None:
        """The mask that `fused` takes: the additive mask here."""
        return self.additive_mask(seq_len, like)

    def additive_mask(self, seq_len: int, like: Tensor) -> Tensor | None:
        """b_h(i - j) where key j is seen, -inf where not: (heads or 1, T, T) in like's dtype; None where
        the variant adds nothing to causal attention."""
        if self.score_bias is None and self.key_mask is None:
            return None
        key = (seq_len, like.dtype, like.device)
        if self.kept_mask is not None and self.kept_mask[0] == key:
            return self.kept_mask[1]
        position = torch.arange(seq_len, device=like.device)
        distance = position[:, None] - position[None, :]
        bias = torch.zeros((), dtype=like.dtype, device=like.device) if self.score_bias is None else self.score_bias(distance).to(like.dtype)
        seen = distance >= 0 if self.key_mask is None else self.key_mask(distance) & (distance >= 0)
        mask = torch.where(seen, bias, torch.tensor(-math.inf, dtype=like.dtype, device=like.device))
        mask = mask if mask.dim() == 3 else mask.expand(1, seq_len, seq_len)
        if self.fixed_mask:
            self.kept_mask = (key, mask)
        return mask

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively, from this layer's score_bias, key_mask and RoPE's base."""
        changed = [name for name in BEYOND_SCORE_MOD if getattr(type(self), name) is not getattr(DotProductAttention, name)]
        if changed:
            raise NotImplementedError(
                f"{type(self).__name__} overrides {', '.join(changed)}: more than a score bias and a key mask, so the "
                "default reference does not describe it; write its reference(x)"
            )
        seq_len = x.shape[1]
        distance = naive.distance(seq_len)
        allowed = naive.causal(seq_len) if self.key_mask is None else self.key_mask(distance) & naive.causal(seq_len)
        bias = 0.0 if self.score_bias is None else self.score_bias(distance).to(torch.float64)
        if not self.content:  # s_ij = b_h(i - j) alone
            weights = naive.softmax_over(torch.zeros(seq_len, seq_len, dtype=torch.float64) + bias, allowed)
            return naive.attend(weights, x, self.value.weight, self.out.weight, self.n_heads)
        rope_base = None if self.rotary is None else self.rotary.base
        return naive.dot_product(x, *self.qkv.weight.chunk(3), self.out.weight, self.n_heads, rope_base, bias, allowed)

    def head_matrices(self) -> HeadMatrices | None:
        if not self.content:
            return None
        return HeadMatrices.from_linear(*self.qkv.weight.chunk(3), self.out.weight, self.n_heads)

    def rotary_queries_and_keys(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        if self.rotary is None:
            return None
        q, k, _ = self.queries_keys_values(x)
        return q, k, self.rotary(q), self.rotary(k)


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float | None = None) -> Tensor:
    """softmax_j( scale q_i . k_j + mask_ij ) v_j over j <= i in torch's fused kernel, for q, k and v
    (batch, heads, T, d), an additive mask (heads or 1, T, T) or None, and scale 1 / sqrt(d) by default."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    mask = mask.to(q.dtype)[None]
    if q.device.type == "cpu" and not mask.requires_grad:  # that kernel gives the mask no gradient
        return cpu_causal_attention_with_mask(q, k, v, mask, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
