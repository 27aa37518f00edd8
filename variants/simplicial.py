"""2-simplicial attention (Clift et al. 2019; Roy et al. 2025, "Fast and Simplex: 2-Simplicial
Attention in Triton", arXiv:2507.02754): a query attends to pairs of keys (j, k) in two causal
windows, scored by a trilinear form, and reads the elementwise product of their two values.

    q_i = W_q x_i      k_j = W_k x_j      k'_k = W_k' x_k      v_j = W_v x_j      v'_k = W_v' x_k
    pairs of query i:   i - w1 < j <= i   and   i - w2 < k <= i          (w1 = window, w2 = second_window)
    s_ijk = sum_l det[ R_i q_i^(l) ; R_j k_j^(l) ; R_k k'_k^(l) ] / sqrt(D)     score=determinant (their eq. 9)
    s_ijk = < q_i, k_j, k'_k > / sqrt(D) = sum_d q_id k_jd k'_kd / sqrt(D)   score=trilinear (their eq. 5)
    a_ijk = softmax_(j,k)( s_ijk )                                            jointly over the pairs
    y_i = W_o sum_jk a_ijk (v_j ∘ v'_k)                                       (their eq. 7; ∘ elementwise)

The default windows, w1 = 64 (the default induction task's whole context) and w2 = 4, keep the
paper's ratio w1 / w2 = 16 (it uses 512 and 32). q, k and k' have D = 3 floor(d_head / 3)
coordinates per head, u^(l) being the l-th chunk of 3; v and v' have d_head. The determinant is the paper's rotation-invariant trilinear form:
det[R a; R b; R c] = det[a; b; c] for any rotation R of a chunk. With R_m turning chunk l by the
angle m theta_l about its third axis (RoPE on each chunk's first two coordinates, theta_l =
rope_base^(-l / (D / 3))), rotations about one axis compose, so s_ijk depends on the offsets j - i
and k - i and on content, never on i: RoPE's property, carried to three vectors. The plain
trilinear form is not rotation invariant and carries no position (as eq. 5; rope_base unused).

Relation to `triple`, the project's -det Gram(q_i, k_j, r_i), r_i a second vector at the query's
own position. By Cauchy-Binet, det Gram(q, k, r) = sum over every triple S of coordinates of
det[q_S; k_S; r_S]^2, so triple is minus the sum of squared signed volumes over all coordinate
triples; in a 3-dimensional head it is exactly -det[q; k; r]^2, minus the square of this variant's
determinant score with the second key pinned to the query (w2 = 1, k' in the role of r). Here the
score is signed and linear in each vector and sums over disjoint chunks only, and the second key
ranges over a window: the softmax runs over w1 w2 pairs instead of T keys.

Weights (need_weights): a_ij = sum_k a_ijk, the marginal over the second key, (batch, heads, T, T),
rows summing to 1. Both paths follow the paper's tiling: the pair vectors p_ik = k'_k × q_i (a cross
product per chunk, so that det[q; k; k'] = p . k) or q_i ∘ k'_k, then, per slice of QUERY_BLOCK
queries, one product of the slice's p with the keys from its first query's window to its last query,
the joint softmax over the pairs, and (a V) ∘ v' summed over k. Time and memory O(T w2 (w1 + block)
d), against O(T^2 d) for standard attention: the windows are what keep it affordable on a CPU, and
no slice scores a key in its queries' future, which at T <= w1 (the zoo's lengths) is half of them.
The training path's backward is written out (PairAttention): it keeps the weights, not autograd's
copies of every intermediate, and takes the softmax's row sums from the output (dy_i . y_i). A
layer's forward + backward at T = 2048 went from 1.85x to 1.18x to 1.38x of standard attention's time
with the written-out backward, then to 0.74x of that with slices in place of padded blocks of equal
span (0.71x at T = 64, batch 32).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from plugin import ROPE_BASE, Range
from variants import naive
from variants.base import AttentionVariant
from variants.rope import Rotary
from variants.tiling import key_spans

SCORES = ("determinant", "trilinear")
QUERY_BLOCK = 16  # queries per slice: a slice reads at most QUERY_BLOCK + w1 - 1 keys, w1 of them per query


class SimplicialAttention(AttentionVariant):
    name = "simplicial"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        max_seq_len: int,
        *,
        window: Annotated[int, Range(1)] = 64,
        second_window: Annotated[int, Range(1)] = 4,
        score: str = "determinant",
        rope_base: Annotated[float, ROPE_BASE] = 10000.0,
    ) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        if score not in SCORES:
            raise ValueError(f"variant.score='{score}' is unknown; allowed: {', '.join(SCORES)}")
        self.score_dim = 3 * (self.d_head // 3)
        if self.score_dim == 0:
            raise ValueError(
                f"variant=simplicial scores chunks of 3 coordinates, so d_head must be at least 3; got d_head={self.d_head} "
                f"(model.d_model={d_model} / model.n_heads={n_heads}); allowed: n_heads <= {d_model // 3} dividing d_model"
            )
        self.window, self.second_window, self.score = window, second_window, score
        self.query_keys = nn.Linear(d_model, 3 * n_heads * self.score_dim, bias=False)
        self.values = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(2 * self.score_dim // 3, max_seq_len, rope_base) if score == "determinant" else None

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """q, k, k' (batch, heads, T, D), rotated for the determinant, and v, v' (batch, heads, T, d_head)."""
        q, k, second_k = (self.split_heads(t) for t in self.query_keys(x).chunk(3, dim=-1))
        v, second_v = (self.split_heads(t) for t in self.values(x).chunk(2, dim=-1))
        if self.rotary is not None:
            q, k, second_k = (self.rotate_chunks(t) for t in (q, k, second_k))
        return q, k, second_k, v, second_v

    def rotate_chunks(self, u: Tensor) -> Tensor:
        """R_m u: each chunk's first two coordinates turned by RoPE, its third kept."""
        chunks = u.unflatten(-1, (-1, 3))
        turned = self.rotary(chunks[..., :2].flatten(-2)).unflatten(-1, (-1, 2))
        return torch.cat((turned, chunks[..., 2:]), dim=-1).flatten(-2)

    def pair_queries(self, q: Tensor, second_k: Tensor) -> Tensor:
        """p (batch, heads, T, w2, D) with s_ijk = p_ic . k_j for the c-th key k of i's second window."""
        q = q[..., None, :] / math.sqrt(self.score_dim)
        if self.score == "trilinear":
            return windows(second_k, self.second_window) * q
        # k' × q per chunk: (k'_1 q_2 - k'_2 q_1, k'_2 q_0 - k'_0 q_2, k'_0 q_1 - k'_1 q_0)
        ahead, behind = (windows(chunk_roll(second_k, shift), self.second_window) for shift in (-1, 1))
        return ahead * chunk_roll(q, 1) - behind * chunk_roll(q, -1)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        q, k, second_k, v, second_v = self.heads(x)
        pair_q, second_v = self.pair_queries(q, second_k), windows(second_v, self.second_window)
        attended, weights = pair_attention(pair_q, k, v, second_v, self.window, need_weights)
        return self.out(self.merge_heads(attended)), weights

    def attention_flops(self, batch: int, seq_len: int) -> int:
        """2 D for p . k and 2 d_head for a V per pair in the windows (the slices' masked extra not counted)."""
        pairs = sum(min(i, self.window) * min(i, self.second_window) for i in range(1, seq_len + 1))
        return 2 * batch * self.n_heads * pairs * (self.score_dim + self.d_head)

    def reference(self, x: Tensor) -> Tensor:
        """Query by query, every pair (j, k) of its windows scored by the sum of the determinants of its
        3 x 3 chunk matrices, or by the trilinear form, naively in float64."""
        w_q, w_k, w_k2 = self.query_keys.weight.chunk(3)
        w_v, w_v2 = self.values.weight.chunk(2)
        q, k, k2 = (naive.heads(x, w, self.n_heads) for w in (w_q, w_k, w_k2))
        if self.score == "determinant":
            q, k, k2 = (naive.rotate_chunks(u, self.rotary.base) for u in (q, k, k2))
        v, v2 = naive.heads(x, w_v, self.n_heads), naive.heads(x, w_v2, self.n_heads)
        outputs = []
        for i in range(x.shape[1]):
            first, second = range(max(0, i - self.window + 1), i + 1), range(max(0, i - self.second_window + 1), i + 1)
            j, kk = (torch.tensor(list(indices)) for indices in zip(*((j, kk) for j in first for kk in second)))
            matrices = torch.stack((q[..., i, None, :].expand(-1, -1, len(j), -1), k[..., j, :], k2[..., kk, :]), dim=-2)
            if self.score == "determinant":
                scores = torch.linalg.det(matrices.unflatten(-1, (-1, 3)).transpose(-3, -2)).sum(-1)
            else:
                scores = matrices.prod(-2).sum(-1)
            outputs.append(((scores / math.sqrt(q.shape[-1])).softmax(-1)[..., None] * v[..., j, :] * v2[..., kk, :]).sum(-2))
        return naive.merge(torch.stack(outputs, dim=-2)) @ self.out.weight.T


def chunk_roll(u: Tensor, shift: int) -> Tensor:
    """u with the coordinates of each chunk of 3 turned cyclically by shift."""
    return u.unflatten(-1, (-1, 3)).roll(shift, dims=-1).flatten(-2)


def windows(u: Tensor, width: int) -> Tensor:
    """(..., T, e) -> (..., T, width, e): at [i, c] the row of position i - width + 1 + c, zeros before 0."""
    *lead, seq_len, e = u.shape
    return key_spans(u.reshape(-1, seq_len, e), 1, width - 1, 0).view(*lead, seq_len, width, e)


def pair_attention(
    pair_q: Tensor, k: Tensor, v: Tensor, second_v: Tensor, window: int, need_weights: bool
) -> tuple[Tensor, Tensor | None]:
    """sum over the pairs (c, j) of query i of softmax_(c, j)( p_ic . k_j ) (v_j ∘ u_ic), for pair_q
    (..., T, w2, D), k (..., T, D), v (..., T, e) and second_v u (..., T, w2, e); and, if asked, the weights summed
    over c, (..., T, T). Queries go QUERY_BLOCK at a time, each slice against the keys from its first
    query's window to its last query (query_slices): keys in the slice's future are never scored."""
    *lead, seq_len, _, _ = pair_q.shape
    flat = [t.flatten(0, len(lead) - 1) for t in (pair_q, k, v, second_v)]
    if not need_weights:
        return PairAttention.apply(*flat, window).view(*lead, seq_len, -1), None
    outputs, marginal = [], k.new_zeros(flat[0].shape[0], seq_len, seq_len)
    for start, end, first, mask in query_slices(seq_len, pair_q.shape[-2], window, k):
        weights, _, attended = pair_attend(*slice_of(flat, start, end, first), mask)
        outputs.append(attended)
        marginal[:, start:end, first:end] = weights.sum(dim=-2)
    return torch.cat(outputs, dim=1).view(*lead, seq_len, -1), marginal.view(*lead, seq_len, seq_len)


def query_slices(seq_len: int, second_window: int, window: int, like: Tensor) -> Iterator[tuple[int, int, int, Tensor]]:
    """(start, end, first, mask) of every slice of QUERY_BLOCK queries start ... end - 1, which reads the
    keys first ... end - 1, with pair_mask over its queries' pairs (n, w2, end - first)."""
    for start in range(0, seq_len, QUERY_BLOCK):
        end, first = min(start + QUERY_BLOCK, seq_len), max(0, start - window + 1)
        queries = torch.arange(start, end, device=like.device).view(-1, 1)
        first_keys = torch.arange(first, end, device=like.device).view(1, -1)
        second_keys = queries - second_window + 1 + torch.arange(second_window, device=like.device)
        yield start, end, first, pair_mask(queries, first_keys, second_keys, window, like.dtype)


def slice_of(flat: list[Tensor], start: int, end: int, first: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """pair_q, k, v and second_v (rows, T, ...) cut to one slice's queries and keys:
    (rows, n, w2, D), (rows, span, D), (rows, span, e), (rows, n, w2, e)."""
    pair_q, k, v, second_v = flat
    return pair_q[:, start:end], k[:, first:end], v[:, first:end], second_v[:, start:end]


def pair_attend(slice_q: Tensor, slice_k: Tensor, slice_v: Tensor, slice_second_v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For a slice of queries, the weights a_icj = softmax_(c, j)( p_ic . k_j + mask ), what each pair
    reads, r_ic = sum_j a_icj v_j, and the output sum_c u_ic ∘ r_ic: from slice_q (rows, n, w2, D),
    slice_k (rows, span, D), slice_v (rows, span, e), slice_second_v u (rows, n, w2, e) and the mask
    (n, w2, span); shapes (rows, n, w2, span), (rows, n, w2, e), (rows, n, e)."""
    rows, n, _, _ = slice_q.shape
    scores = slice_q.flatten(-3, -2) @ slice_k.transpose(-2, -1)  # (rows, n w2, span)
    weights = scores.view(rows, n, -1).add_(mask.flatten(-2)).softmax(dim=-1).view(*slice_q.shape[:-1], -1)
    read = (weights.flatten(-3, -2) @ slice_v).view_as(slice_second_v)
    return weights, read, (read * slice_second_v).sum(dim=-2)


def pair_attend_backward(
    grad_attended: Tensor, slice_q: Tensor, slice_k: Tensor, slice_v: Tensor, slice_second_v: Tensor, weights: Tensor, read: Tensor, attended: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The gradients of pair_attend's output with respect to slice_q, slice_k, slice_v and slice_second_v."""
    # d loss / d s_icj = a_icj (da_icj - sum_(c', j') a_ic'j' da_ic'j'), the sum being dy_i . y_i
    delta = torch.linalg.vecdot(grad_attended, attended)[..., None, None]
    grad_attended = grad_attended.unsqueeze(-2)  # over each query's w2 pairs
    grad_read = (grad_attended * slice_second_v).flatten(-3, -2)  # (rows, n w2, e)
    grad_second_v = grad_attended * read
    grad_v = weights.flatten(-3, -2).transpose(-2, -1) @ grad_read
    grad_scores = (grad_read @ slice_v.transpose(-2, -1)).view_as(weights).sub_(delta).mul_(weights).flatten(-3, -2)
    grad_q = (grad_scores @ slice_k).view_as(slice_q)
    grad_k = grad_scores.transpose(-2, -1) @ slice_q.flatten(-3, -2)
    return grad_q, grad_k, grad_v, grad_second_v


class PairAttention(torch.autograd.Function):
    """pair_attention's output, from pair_q (rows, T, w2, D), k (rows, T, D), v (rows, T, e) and second_v
    (rows, T, w2, e), slice by slice, with its backward written out, so that autograd keeps no masked
    scores and replays no elementwise pass: the weights (w2 (window + QUERY_BLOCK) per query, no T x T)
    are kept, the softmax's backward takes sum_(c, j) a_icj da_icj = dy_i . y_i, one value per query,
    from the output, and each slice's gradients are written into one tensor per input (autograd's
    would zero-fill and copy a whole-sequence tensor per slice and input)."""

    @staticmethod
    def forward(ctx, pair_q: Tensor, k: Tensor, v: Tensor, second_v: Tensor, window: int) -> Tensor:
        flat = [pair_q, k, v, second_v]
        ctx.slices, kept, outputs = [], [], []
        for start, end, first, mask in query_slices(pair_q.shape[1], pair_q.shape[2], window, k):
            weights, read, attended = pair_attend(*slice_of(flat, start, end, first), mask)
            ctx.slices.append((start, end, first))
            kept += [weights, read, attended]
            outputs.append(attended)
        ctx.save_for_backward(*flat, *kept)
        return torch.cat(outputs, dim=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_attended: Tensor) -> tuple[Tensor | None, ...]:
        pair_q, k, v, second_v, *kept = ctx.saved_tensors
        grad_q, grad_second_v = torch.empty_like(pair_q), torch.empty_like(second_v)
        grad_k, grad_v = torch.zeros_like(k), torch.zeros_like(v)  # the slices' key spans overlap: summed
        for index, (start, end, first) in enumerate(ctx.slices):
            kept_here = kept[3 * index : 3 * index + 3]
            slice_grad_q, slice_grad_k, slice_grad_v, slice_grad_second_v = pair_attend_backward(
                grad_attended[:, start:end], *slice_of([pair_q, k, v, second_v], start, end, first), *kept_here
            )
            grad_q[:, start:end], grad_second_v[:, start:end] = slice_grad_q, slice_grad_second_v
            grad_k[:, first:end] += slice_grad_k
            grad_v[:, first:end] += slice_grad_v
        return grad_q, grad_k, grad_v, grad_second_v, None


def pair_mask(queries: Tensor, first_keys: Tensor, second_keys: Tensor, window: int, dtype: torch.dtype) -> Tensor:
    """0 where (second key, first key) is a pair of the query's windows, -inf elsewhere, from the
    positions of the queries (..., n, 1), first keys (..., 1, L) and second keys (..., n, w2), these last
    always inside the second window, so that only their start is checked: (..., n, w2, L)."""
    first = (first_keys <= queries) & (first_keys > queries - window) & (first_keys >= 0)
    pair = (second_keys >= 0)[..., None] & first[..., None, :]
    return torch.zeros(pair.shape, dtype=dtype, device=pair.device).masked_fill(~pair, -math.inf)
