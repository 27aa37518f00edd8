"""Naive float64 pieces for the variants' references (``AttentionVariant.reference``).

Each piece is written from the equations, as plainly as they read (a T x T matrix where the fast
path tiles, a loop where it chunks, an explicit angle where it multiplies complex numbers), and
shares no code with the fast paths, flash-linear-attention's rule for its naive.py: a reference
built from them checks a training path instead of repeating it. Only the references and the tests
use them. Inputs are float64, on the CPU.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def heads(x: Tensor, weight: Tensor, n_heads: int) -> Tensor:
    """x W^T split into heads: (batch, heads, T, width / heads)."""
    return (x @ weight.T).unflatten(-1, (n_heads, -1)).transpose(1, 2)


def merge(per_head: Tensor) -> Tensor:
    """(batch, heads, T, d) -> (batch, T, heads * d)"""
    return per_head.transpose(1, 2).flatten(2)


def distance(seq_len: int) -> Tensor:
    """i - j as (T, T)"""
    position = torch.arange(seq_len)
    return position[:, None] - position[None, :]


def causal(seq_len: int) -> Tensor:
    """j <= i as (T, T)"""
    return distance(seq_len) >= 0


def rotate(u: Tensor, base: float) -> Tensor:
    """RoPE: pair (2p, 2p+1) at position m turned by m base^(-2p/d)."""
    d, seq_len = u.shape[-1], u.shape[-2]
    angle = torch.arange(seq_len, dtype=torch.float64)[:, None] * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    even, odd = u[..., 0::2], u[..., 1::2]
    turned = torch.stack((even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()), dim=-1)
    return turned.flatten(-2)


def rotate_chunks(u: Tensor, base: float) -> Tensor:
    """Chunk l of 3 coordinates at position m turned by m base^(-l / chunks) about its third axis."""
    chunks = u.unflatten(-1, (-1, 3))
    angle = torch.arange(u.shape[-2], dtype=torch.float64)[:, None] * base ** (-torch.arange(chunks.shape[-2], dtype=torch.float64) / chunks.shape[-2])
    first, second, third = chunks.unbind(-1)
    return torch.stack((first * angle.cos() - second * angle.sin(), first * angle.sin() + second * angle.cos(), third), dim=-1).flatten(-2)


def softmax_over(scores: Tensor, allowed: Tensor) -> Tensor:
    """softmax_j of the scores over the allowed keys j, 0 elsewhere."""
    return scores.masked_fill(~allowed, -math.inf).softmax(-1)


def rms(u: Tensor, gain: Tensor | float, eps: float) -> Tensor:
    """gain u / sqrt(mean_d u_d^2 + eps)"""
    return u / (u.square().mean(-1, keepdim=True) + eps).sqrt() * gain


def attend(weights: Tensor, x: Tensor, w_v: Tensor, w_o: Tensor, n_heads: int) -> Tensor:
    """y_i = W_o sum_j a_ij v_j, v_j = W_v x_j, for weights a (batch or 1, heads, T, T)."""
    return merge(weights @ heads(x, w_v, n_heads)) @ w_o.T


def dot_product(x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, n_heads: int, rope_base: float | None,
                bias: Tensor | float = 0.0, allowed: Tensor | None = None) -> Tensor:  # fmt: skip
    """W_o sum_j softmax_j( q_i . k_j / sqrt(d) + bias ) v_j over the allowed j (j <= i by default),
    q and k rotated by RoPE where a base is given."""
    q, k = heads(x, w_q, n_heads), heads(x, w_k, n_heads)
    if rope_base is not None:
        q, k = rotate(q, rope_base), rotate(k, rope_base)
    allowed = causal(x.shape[1]) if allowed is None else allowed
    return attend(softmax_over(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias, allowed), x, w_v, w_o, n_heads)
