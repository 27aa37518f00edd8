"""Triple-product attention (seed 001): a key scores by the volume it adds to the plane of the
query's two vectors q_i and r_i; the flatter the parallelepiped, the higher the score.

    q_i = R_i W_q x_i    k_j = R_j W_k x_j    r_i = R_i W_r x_i    v_j = W_v x_j
    s_ij = -det Gram(q_i, k_j, r_i) * d_head^-1.5 * tau_h
    a_ij = softmax_j( s_ij )      over j <= i
    y_i = W_o sum_j a_ij v_j

tau_h = 1, as in the seed, unless ``learnable_temperature`` makes it exp(theta_h), one per head,
theta starting at 0: the score grows as the sixth power of the projections' scale, so a learned
temperature lets training set the sharpness without going through the weights' norms.

Projection form (shared/notes/triple-product.md). With r_perp = r - (r . q^) q^, q^ = q / |q|,

    -det Gram(q, k, r) = -|q|^2 |r_perp|^2 |k_perp|^2       k_perp: k less its part in span{q, r}
                       = (a . k)^2 + (b . k)^2 - c |k|^2,
    a = |r_perp| q,   b = |q| r_perp,   c = |q|^2 |r_perp|^2,

so a score is one product of the query's stacked plane [a_i; b_i] with k_j, never the five large
cancelling terms of the expanded determinant, and it is <= 0: 0 for a key in the plane whatever
its length, -c |k_perp|^2 otherwise. A rotation shared by all three vectors leaves their Gram
matrix unchanged, and RoPE turns q_i and r_i alike, so a score depends on j - i and on content,
not on i.

Training path: a custom autograd function walks tiles of (batch*head rows, query block), skips
the key blocks above the diagonal, and recomputes each tile's scores in backward from the saved
row log-sum-exp, so no T x T tensor is kept for backward (the flash-attention recipe). Scores
and softmax are computed in float32 at least: float16 and bfloat16 inputs, and bfloat16
autocast, are upcast after the projections, since the degree-6 products overflow float16 (max
65504) already at entries of about 3.
"""
from __future__ import annotations

import contextlib
import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from plugin import ROPE_BASE
from variants import naive
from variants.base import AttentionVariant, causal_weights
from variants.rope import Rotary
from variants.tiling import Tiling, future_mask, tile_view

MIN_D_HEAD = 3  # three vectors in fewer dimensions always have a singular Gram matrix
TILING = Tiling(query_block=64, tile_elements=1 << 18, min_rows=16)
LOG2_E = math.log2(math.e)
# Weights below 2^-64 of their row's largest are set to exactly 0 before exp2: the row's sum (at
# least 1) cannot see them even in float64, and exp2 takes a slow path, twice as long on this
# project's CPU, for results in the denormal range (whose arithmetic is slow on many CPUs).
NEGLIGIBLE_LOG2 = -64.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision inputs (the documented upcast), the input's own dtype otherwise."""
    return torch.promote_types(dtype, torch.float32)


def query_planes(q: Tensor, r: Tensor, root_scale: Tensor | float = 1.0) -> tuple[Tensor, Tensor]:
    """The query side of the projection form for q, r (..., d), times sqrt(scale): planes (..., 2, d)
    holding a and b, and c (...), so that scale * -det Gram(q, k, r) = (a . k)^2 + (b . k)^2 - c |k|^2."""
    tiny = torch.finfo(q.dtype).tiny  # keeps a zero q or r_perp from dividing by 0 or differentiating sqrt at 0
    q_norm_sq = torch.linalg.vecdot(q, q).unsqueeze(-1)
    r_perp = torch.addcmul(r, torch.linalg.vecdot(r, q).unsqueeze(-1) / q_norm_sq.clamp_min(tiny), q, value=-1)
    r_perp_norm_sq = torch.linalg.vecdot(r_perp, r_perp).unsqueeze(-1)
    weights = torch.stack((r_perp_norm_sq, q_norm_sq), dim=-2).clamp_min(tiny).sqrt() * root_scale  # (..., 2, 1)
    planes = torch.stack((q, r_perp), dim=-2) * weights
    return planes, weights[..., 0, 0].square() * q_norm_sq[..., 0]


def gram_scores(q: Tensor, k: Tensor, r: Tensor) -> Tensor:
    """-det Gram(q_i, k_j, r_i) for q, r (..., T_query, d) and k (..., T_key, d): (..., T_query, T_key),
    unscaled and unmasked, in float32 at least."""
    dtype = compute_dtype(q.dtype)
    q, k, r = q.to(dtype), k.to(dtype), r.to(dtype)
    planes, c = query_planes(q, r)
    a_k, b_k = (plane @ k.transpose(-2, -1) for plane in planes.unbind(-2))
    return torch.addcmul(torch.addcmul(-c[..., None] * torch.linalg.vecdot(k, k)[..., None, :], a_k, a_k), b_k, b_k)


def without_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off for the block; on the meta device, where the memory estimate runs the
    model and autocast does not exist, nothing to switch off."""
    return contextlib.nullcontext() if device_type == "meta" else torch.autocast(device_type, enabled=False)


class TripleProductAttention(AttentionVariant):
    name = "triple"

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        max_seq_len: int,
        *,
        learnable_temperature: bool = False,
        rope_base: Annotated[float, ROPE_BASE] = 10000.0,
    ) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        if self.d_head < MIN_D_HEAD:
            raise ValueError(
                f"variant=triple needs d_head >= {MIN_D_HEAD} for its 3 x 3 Gram matrix; got d_head={self.d_head} "
                f"(model.d_model={d_model} / model.n_heads={n_heads})"
            )
        self.qkr = nn.Linear(d_model, 3 * d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)
        self.log_temperature = nn.Parameter(torch.zeros(n_heads)) if learnable_temperature else None

    def heads(self, x: Tensor, offset: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q, k, r, rotated as if the first position were `offset`, and v: each (batch, heads, T, d_head)
        in the compute dtype. The projections run under the caller's autocast, the rotation not."""
        dtype = compute_dtype(x.dtype)
        # contiguous (3, batch, heads, T, d_head) before the rotation, so that q, k and r come out contiguous
        qkr = self.qkr(x).unflatten(-1, (3, self.n_heads, self.d_head)).permute(2, 0, 3, 1, 4).contiguous().to(dtype)
        v = self.split_heads(self.value(x).to(dtype))
        with without_autocast(x.device.type):
            q, k, r = self.rotary(qkr, offset).unbind()
        return q, k, r, v

    def scale(self, dtype: torch.dtype) -> Tensor:
        """d_head^-1.5, times each head's learned temperature if there is one: (heads or 1, 1, 1)."""
        scale = torch.full((1, 1, 1), self.d_head**-1.5, dtype=dtype, device=self.value.weight.device)
        if self.log_temperature is None:
            return scale
        return scale * self.log_temperature.to(dtype).exp()[:, None, None]

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        q, k, r, v = self.heads(x)
        with without_autocast(x.device.type):
            if need_weights:
                weights = causal_weights(gram_scores(q, k, r) * self.scale(q.dtype))
                attended = weights @ v
            else:
                weights, attended = None, self.attend(q, k, r, v)
        return self.out(self.merge_heads(attended).to(x.dtype)), weights

    def attention_flops(self, batch: int, seq_len: int) -> int:
        """Per (query, key) pair of the causal half, the projection form's two products [a_i; b_i] . k_j
        (4 d_head) and a_ij v_j (2 d_head): 1.5 times dot-product attention's (c_i |k_j|^2 is O(T))."""
        return 3 * batch * self.n_heads * seq_len**2 * self.d_head

    def attend(self, q: Tensor, k: Tensor, r: Tensor, v: Tensor) -> Tensor:
        """sum_j a_ij v_j (batch, heads, T, d_head) through the tiled kernel."""
        batch, heads, seq_len, d_head = q.shape
        planes, c = query_planes(q, r, self.scale(q.dtype).sqrt()[..., None])
        block = TILING.block(seq_len)
        attended = GramAttention.apply(
            planes.view(batch * heads, 2 * seq_len, d_head),
            c.view(batch * heads, seq_len),
            k.view(batch * heads, seq_len, d_head),
            torch.linalg.vecdot(k, k).view(batch * heads, seq_len),
            v.reshape(batch * heads, seq_len, d_head),
            future_mask(block, q),
        )
        return attended.view(batch, heads, seq_len, d_head)

    def reference(self, x: Tensor) -> Tensor:
        """The equations above, naively in float64: every Gram determinant by torch.linalg.det."""
        w_q, w_k, w_r = self.qkr.weight.chunk(3)
        q, k, r = (naive.rotate(naive.heads(x, w, self.n_heads), self.rotary.base) for w in (w_q, w_k, w_r))
        vectors = torch.stack(torch.broadcast_tensors(q[..., :, None, :], k[..., None, :, :], r[..., :, None, :]), dim=-2)
        tau = 1.0 if self.log_temperature is None else self.log_temperature.exp()[:, None, None]
        scores = -torch.linalg.det(vectors @ vectors.transpose(-2, -1)) * q.shape[-1] ** -1.5 * tau
        return naive.attend(naive.softmax_over(scores, naive.causal(x.shape[1])), x, self.value.weight, self.out.weight, self.n_heads)


class Workspace:
    """The tile buffers of the Gram kernel (Tiling.buffer)."""

    def __init__(self, like: Tensor, batch_heads: int, seq_len: int, block: int, buffers: int) -> None:
        self.projections = TILING.buffer(like, batch_heads, seq_len, block, scores_per_query=2)
        self.buffers = [TILING.buffer(like, batch_heads, seq_len, block) for _ in range(buffers)]

    def log2_scores(
        self, planes: Tensor, neg_c: Tensor, k: Tensor, m: Tensor, offset: Tensor | None, start: int, future: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The tile's plane-key products (rows, 2n, e) and its causally masked scores in base 2
        (rows, n, e), log2(e) (|[a_i; b_i] . k_j|^2 - c_i m_j) + offset_i, for the n queries from
        `start` and the keys before the tile's end e; neg_c = -log2(e) c. Base 2, because exp2 is
        several times faster than exp on CPU."""
        rows, n, keys = neg_c.shape[0], neg_c.shape[1], k.shape[1]
        projections = tile_view(self.projections, rows, 2 * n, keys)
        torch.matmul(planes, k.transpose(-2, -1), out=projections)
        scores = tile_view(self.buffers[0], rows, n, keys)
        if offset is None:
            torch.mul(neg_c[..., None], m[:, None, :], out=scores)
        else:
            torch.addcmul(offset, neg_c[..., None], m[:, None, :], out=scores)
        pairs = projections.view(rows, n, 2, keys)
        scores.addcmul_(pairs[:, :, 0], pairs[:, :, 0], value=LOG2_E).addcmul_(pairs[:, :, 1], pairs[:, :, 1], value=LOG2_E)
        scores[..., start:].add_(future[:n, :n])
        return projections, scores

    def product(self, left: Tensor, right: Tensor) -> Tensor:
        """left @ right, written into the second buffer."""
        shape = (left.shape[0], left.shape[1], right.shape[-1])
        return torch.matmul(left, right, out=tile_view(self.buffers[1], *shape))


class GramAttention(torch.autograd.Function):
    """softmax_j( |[a_i; b_i] . k_j|^2 - c_i m_j ) v_j over j <= i, for each batch*head:
    planes (BH, 2T, d) with rows a_0, b_0, a_1, b_1, ...; c (BH, T); k (BH, T, d); m (BH, T); v (BH, T, dv);
    future: the additive causal mask of one diagonal block (block, block), -inf above the diagonal."""

    @staticmethod
    def forward(ctx, planes: Tensor, c: Tensor, k: Tensor, m: Tensor, v: Tensor, future: Tensor) -> Tensor:
        batch_heads, seq_len, _ = k.shape
        out = torch.empty_like(v)
        log2_sum_exp = c.new_empty(*c.shape, 1)
        neg_c = c * -LOG2_E
        workspace = Workspace(k, batch_heads, seq_len, future.shape[0], buffers=1)
        for rows, start, end in TILING.tiles(batch_heads, seq_len, future.shape[0]):
            _, scores = workspace.log2_scores(
                planes[rows, 2 * start : 2 * end], neg_c[rows, start:end], k[rows, :end], m[rows, :end], None, start, future
            )
            row_max = scores.amax(-1, keepdim=True)
            total = F.threshold_(scores.sub_(row_max), NEGLIGIBLE_LOG2, -math.inf).exp2_().sum(-1, keepdim=True)
            out[rows, start:end] = (scores @ v[rows, :end]).div_(total)
            log2_sum_exp[rows, start:end] = row_max + total.log2()
        ctx.save_for_backward(planes, c, k, m, v, future, out, log2_sum_exp)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        planes, c, k, m, v, future, out, log2_sum_exp = ctx.saved_tensors
        batch_heads, seq_len, _ = k.shape
        with without_autocast(grad_out.device.type):
            grad_out = grad_out.to(out.dtype)
            # d loss / d s_ij = p_ij (dp_ij - delta_i), with delta_i = sum_j p_ij dp_ij = grad_out_i . out_i
            delta = torch.linalg.vecdot(grad_out, out).unsqueeze(-1)
            grad_planes, grad_c, grad_m = torch.empty_like(planes), torch.empty_like(c), torch.zeros_like(m)
            # the key-side gradients accumulate transposed, (BH, d, T), so that their products write long rows
            grad_k_t = k.new_zeros(batch_heads, k.shape[-1], seq_len)
            grad_v_t = v.new_zeros(batch_heads, v.shape[-1], seq_len)
            neg_c, neg_log2_sum_exp = c * -LOG2_E, -log2_sum_exp
            workspace = Workspace(k, batch_heads, seq_len, future.shape[0], buffers=2)
            for rows, start, end in TILING.tiles(batch_heads, seq_len, future.shape[0]):
                tile_planes, tile_c, tile_grad_out = planes[rows, 2 * start : 2 * end], c[rows, start:end], grad_out[rows, start:end]
                projections, probs = workspace.log2_scores(
                    tile_planes, neg_c[rows, start:end], k[rows, :end], m[rows, :end], neg_log2_sum_exp[rows, start:end], start, future
                )
                F.threshold_(probs, NEGLIGIBLE_LOG2, -math.inf).exp2_()
                grad_v_t[rows, :, :end] += tile_grad_out.transpose(-2, -1) @ probs
                grad_scores = workspace.product(tile_grad_out, v[rows, :end].transpose(-2, -1))
                grad_scores.sub_(delta[rows, start:end]).mul_(probs)
                # a row times the transposed tile: ten times faster than the tile times a column
                grad_c[rows, start:end] = -(m[rows, None, :end] @ grad_scores.transpose(-2, -1)).squeeze(-2)
                grad_m[rows, :end] -= (tile_c[:, None, :] @ grad_scores).squeeze(-2)
                # d (plane . k)^2 = 2 (plane . k) d(plane . k): weight each product by its score's gradient
                projections.view(*grad_scores.shape[:2], 2, -1).mul_(grad_scores[:, :, None])
                grad_planes[rows, 2 * start : 2 * end] = 2 * (projections @ k[rows, :end])
                grad_k_t[rows, :, :end] += 2 * (tile_planes.transpose(-2, -1) @ projections)
        return grad_planes, grad_c, grad_k_t.transpose(-2, -1), grad_m, grad_v_t.transpose(-2, -1), None
