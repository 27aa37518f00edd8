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

Training path. With e_h(d) = exp(b_h(d) - max b_h) and Z_hi = sum_(d <= i) e_h(d), a_ij = e_h(i - j) /
Z_hi: a Toeplitz matrix with its rows rescaled, the same for every sequence of the batch. So the
weights are formed once per call (heads x T x T, not batch x heads x T x T), and the batch's values
are one matrix per head, (T, batch d_head), so that each head's attention is one large product,
skipping the key blocks above the diagonal. Backward by hand (DistanceAttention): dv = a^T dy, and
for the bias, whose every entry sits on one diagonal, d b_h(d) = sum_i a_i,i-d (g_i . v_i-d -
g_i . y_i), summed over the batch, from one product g v^T per head and a sum along the diagonals.
A convolution by FFT would cost less, but rows whose Z is tiny (a bias that looks far back, read
at the first positions) would divide its rounding error by Z.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from variants import naive
from variants.dot_product import DotProductAttention

QUERY_BLOCK = 256  # rows of the weights per product: the blocks above the diagonal skipped, few calls


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

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        if need_weights:
            return super().forward(x, need_weights)
        batch, seq_len, _ = x.shape
        v = self.value(x).view(batch, seq_len, self.n_heads, self.d_head)
        attended = DistanceAttention.apply(self.distance_bias[:, :seq_len].to(x.dtype), v)
        return self.out(attended.flatten(2)), None

    def attention_flops(self, batch: int, seq_len: int) -> int:
        """2 d_head per (query, key) pair for a v, the causal half; no q . k."""
        return batch * self.n_heads * seq_len**2 * self.d_head

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64: b_h(i - j) read from the table for every j <= i."""
        distance = naive.distance(x.shape[1])
        weights = naive.softmax_over(self.distance_bias[:, distance.clamp(min=0)], distance >= 0)
        return naive.attend(weights, x, self.value.weight, self.out.weight, self.n_heads)


def distance_weights(bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(e, Z, weights with the keys in reverse order) for bias (heads, T): e_h(d) = exp(b_h(d) - max b_h)
    and Z_hi = sum_(d <= i) e_h(d), each (heads, T); weights (heads, T, T), [i, c] = a_i,T-1-c, 0 where
    T - 1 - c > i. Reversed, because then [i, c] = e(i + c - (T - 1)) / Z_i is a Hankel matrix, a strided
    view of e padded with zeros, where the Toeplitz matrix a itself would need a flipped copy."""
    heads, seq_len = bias.shape
    numerators = (bias - bias.amax(-1, keepdim=True)).exp()
    normalisers = numerators.cumsum(-1)
    padded = F.pad(numerators, (seq_len - 1, 0))
    hankel = padded.as_strided((heads, seq_len, seq_len), (padded.stride(0), 1, 1))
    return numerators, normalisers, hankel / normalisers[..., None]


def blocks(seq_len: int) -> Iterator[tuple[int, int]]:
    for start in range(0, seq_len, QUERY_BLOCK):
        yield start, min(start + QUERY_BLOCK, seq_len)


class DistanceAttention(torch.autograd.Function):
    """y_i = sum_(j <= i) a_ij v_j, a_ij = e(i - j) / Z_i, for bias (heads, T) and v (batch, T, heads, d):
    (batch, T, heads, d), each head's batch side by side in one (T, batch d) matrix."""

    @staticmethod
    def forward(ctx, bias: Tensor, v: Tensor) -> Tensor:
        batch, seq_len, heads, d = v.shape
        _, _, weights = distance_weights(bias)
        values = v.permute(2, 1, 0, 3).reshape(heads, seq_len, batch * d)
        reversed_values = values.flip(1)
        out = torch.empty_like(values)
        for start, end in blocks(seq_len):  # queries [start, end) read the keys j < end: c >= T - end
            torch.matmul(weights[:, start:end, seq_len - end :], reversed_values[:, seq_len - end :], out=out[:, start:end])
        ctx.save_for_backward(bias, values, out)
        return out.view(heads, seq_len, batch, d).permute(2, 1, 0, 3)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        bias, values, out = ctx.saved_tensors
        batch, seq_len, heads, d = grad.shape
        numerators, normalisers, weights = distance_weights(bias)
        grad_out = grad.permute(2, 1, 0, 3).reshape(heads, seq_len, batch * d)
        reversed_grad_values = torch.empty_like(values)
        for start, end in blocks(seq_len):  # keys [start, end) are read by the queries i >= start
            torch.matmul(weights[:, start:, seq_len - end : seq_len - start].transpose(-2, -1), grad_out[:, start:],
                         out=reversed_grad_values[:, seq_len - end : seq_len - start])  # fmt: skip
        # d loss / d b(d) = sum_(i >= d) a_i,i-d (g_i . v_i-d - g_i . y_i), every dot product summed over the batch,
        #                 = e(d) (sum_(i >= d) (g_i / Z_i) . v_i-d - sum_(i >= d) g_i . y_i / Z_i)
        scaled = grad_out / normalisers[..., None]
        tail = torch.linalg.vecdot(scaled, out).flip(-1).cumsum(-1).flip(-1)
        return numerators * (diagonal_sums(scaled, values) - tail), reversed_grad_values.flip(1).view(heads, seq_len, batch, d).permute(2, 1, 0, 3)


def diagonal_sums(left: Tensor, right: Tensor) -> Tensor:
    """s(d) = sum_(i >= d) left_i . right_i-d for left, right (heads, T, width): (heads, T). Block by block
    of rows i (B = QUERY_BLOCK, or T if shorter), the products left_i . right_j (j <= i) land in a buffer
    whose B columns on the left are zeros, at [r, B + j] for row r = i - start; the view [r, m] =
    buffer[r, m + r] then has j = start + r - d, d = B + start - m, in column m, and a sum over its rows
    sums a diagonal."""
    heads, seq_len, _ = left.shape
    block = min(QUERY_BLOCK, seq_len)
    sums = left.new_zeros(heads, seq_len + block)
    buffer = left.new_zeros(heads, block, block + seq_len)
    for start, end in blocks(seq_len):
        rows = end - start
        torch.matmul(left[:, start:end], right[:, :end].transpose(-2, -1), out=buffer[:, :rows, block : block + end])
        diagonals = buffer.as_strided((heads, rows, block + start + 1), (buffer.stride(0), buffer.stride(1) + 1, 1))
        sums[:, : block + start + 1] += diagonals.sum(1).flip(-1)
    return sums[:, :seq_len]
