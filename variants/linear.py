"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"): softmax's exp(q . k) is
replaced by a kernel phi(q) . phi(k) with a positive feature map, so causal attention becomes a
running sum, a state of fixed size.

    q_i = W_q x_i        k_j = W_k x_j        v_j = W_v x_j        phi(u) = elu(u) + 1 > 0
    S_i = sum_{j<=i} phi(k_j) v_j^T        z_i = sum_{j<=i} phi(k_j)        (d_head x d_head, and d_head)
    y_i = W_o ( S_i^T phi(q_i) / (phi(q_i) . z_i + eps) )        eps: the float type's resolution

Where training drives a query's features to 0 (elu + 1 of a large negative number), the
denominator vanishes with the numerator, and the quotient and its gradient turn to NaN; eps
keeps them finite, as the authors' 1e-6 does in their code (fast-transformers), and it is the
float type's own resolution so that a denominator of ordinary size is changed only within rounding.

A fixed-state model: whatever a query can read is in a d_head x (d_head + 1) state per head,
however long the sequence, so recall of more items than the state holds fails as length grows.
No positional signal of its own: order enters only through causality (model.learned_positions
adds absolute positions to the stream).

Weights (need_weights): the implied causal kernel matrix, normalised,

    a_ij = phi(q_i) . phi(k_j) / (sum_{j'<=i} phi(q_i) . phi(k_j') + eps)      >= 0,

rows summing to 1 within rounding (less only where the denominator vanishes),
so that y_i = W_o sum_j a_ij v_j as for softmax attention, and head scores apply.

Training path: the chunked form (flash-linear-attention's "chunk" mode), O(T (C + d) d) instead of
O(T^2 d): within a chunk of C positions the masked C x C kernel matrix, across chunks the state at
the chunk's start (an exclusive prefix sum of the chunks' states). Numerator and denominator in one
pass: v gets a column of ones, whose output is phi(q_i) . z_i.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants import naive
from variants.base import AttentionVariant

CHUNK = 64  # positions per chunk: long enough for efficient products, short enough to keep C x C small


def feature_map(u: Tensor) -> Tensor:
    """phi(u) = elu(u) + 1"""
    return F.elu(u) + 1


class LinearAttention(AttentionVariant):
    name = "linear"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        queries_keys, v = self.qkv(x).split((2 * self.n_heads * self.d_head, self.n_heads * self.d_head), dim=-1)
        # phi before the heads are split: over rows of 2 d_model contiguous numbers its backward ran in
        # half the time it took over the heads' strided views (16 numbers at a time)
        q, k, v = (self.split_heads(t) for t in (*feature_map(queries_keys).chunk(2, dim=-1), v))
        if need_weights:
            kernel = (q @ k.transpose(-2, -1)).tril()
            weights = kernel / (kernel.sum(dim=-1, keepdim=True) + torch.finfo(kernel.dtype).eps)
            return self.out(self.merge_heads(weights @ v)), weights
        numerator_and_denominator = chunked_causal_products(q, k, F.pad(v, (0, 1), value=1.0))
        denominator = numerator_and_denominator[..., -1:] + torch.finfo(q.dtype).eps
        attended = numerator_and_denominator[..., :-1] / denominator
        return self.out(self.merge_heads(attended)), None

    def attention_flops(self, batch: int, seq_len: int) -> int:
        """The chunked form's products: per chunk the causal half of the C x C kernel and of its
        product with the extended v, and, where there is more than one chunk, the chunk's state
        phi(K)^T V and the read-out phi(Q) S."""
        chunk = min(CHUNK, seq_len)
        chunks = -(-seq_len // chunk)
        d, e = self.d_head, self.d_head + 1
        states = 4 * chunk * d * e if chunks > 1 else 0
        return batch * self.n_heads * chunks * (chunk**2 * (d + e) + states)

    def reference(self, x: Tensor) -> Tensor:
        """The recurrence above, one position at a time, naively in float64 (eps: float64's resolution)."""
        w_q, w_k, w_v = self.qkv.weight.chunk(3)
        q, k = (F.elu(naive.heads(x, w, self.n_heads)) + 1 for w in (w_q, w_k))
        v = naive.heads(x, w_v, self.n_heads)
        state, normaliser, outputs = 0.0, 0.0, []
        for i in range(x.shape[1]):
            state = state + k[..., i, :, None] * v[..., i, None, :]
            normaliser = normaliser + k[..., i, :]
            outputs.append((q[..., i, :, None] * state).sum(-2) / ((q[..., i, :] * normaliser).sum(-1, keepdim=True) + 2.0**-52))
        return naive.merge(torch.stack(outputs, dim=-2)) @ self.out.weight.T


def chunked_causal_products(q: Tensor, k: Tensor, v: Tensor, chunk: int = CHUNK) -> Tensor:
    """sum_{j<=i} (q_i . k_j) v_j for every i, for q, k (..., T, d) and v (..., T, e), chunk by chunk."""
    seq_len = q.shape[-2]
    if seq_len <= chunk:  # one chunk, with no state before it (the zoo's lengths): 0.80x to 0.85x a layer
        return causal_products_within(q, k, v)
    chunks = -(-seq_len // chunk)
    padding = chunks * chunk - seq_len  # at the end, in every query's future
    q, k, v = (F.pad(t, (0, 0, 0, padding)).unflatten(-2, (chunks, chunk)) for t in (q, k, v))
    within = causal_products_within(q, k, v)
    states = k.transpose(-2, -1) @ v  # (..., chunks, d, e)
    before = F.pad(states.cumsum(dim=-3)[..., :-1, :, :], (0, 0, 0, 0, 1, 0))  # the sum of the chunks before each
    return (within + q @ before).flatten(-3, -2)[..., :seq_len, :]


def causal_products_within(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """sum_{j<=i} (q_i . k_j) v_j over the positions of one chunk, for q, k (..., C, d) and v (..., C, e)."""
    causal = torch.ones(q.shape[-2], q.shape[-2], dtype=q.dtype, device=q.device).tril()
    return ((q @ k.transpose(-2, -1)) * causal) @ v  # a product with the 0/1 mask: tril's kernel took 1.6x as long
