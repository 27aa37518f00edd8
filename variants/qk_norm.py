"""QK-norm (Henry et al. 2020, "Query-Key Normalization for Transformers"; Dehghani et al. 2023,
ViT-22B): queries and keys are normalised per head before the dot product, and a learned scale per
head, not the projections' norms, sets how sharp the head can be.

    q_i = R_i g_h rms(W_q x_i)        k_j = R_j rms(W_k x_j)        v_j = W_v x_j
    rms(u) = u / sqrt(mean_d u_d^2 + 1e-6)        g_h = exp(s_h), s_h learned per head, from 0
    a_ij = softmax_j( q_i . k_j / sqrt(d_head) )      over j <= i
    y_i = W_o sum_j a_ij v_j

rms(q) . rms(k) / sqrt(d_head) = sqrt(d_head) cos(q, k), so a logit lies within g_h sqrt(d_head) of
0: Henry et al.'s learned scale g in place of 1 / sqrt(d_head), with the RMS, which is the L2 norm
over sqrt(d_head), in place of the L2 norm (Dehghani et al. normalise with LayerNorm and learn a
scale per dimension; one per head keeps the normalisation to one reduction and one product per
vector, so that the layer stays within a few percent of the fused kernel). The normalisation comes
before RoPE, so the rotation still makes the scores relative. The scores are no longer a bilinear
form of the stream: no head matrices for composition scores.
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from plugin import ROPE_BASE
from variants.dot_product import DotProductAttention
from variants.rope import Rotary

NORM_EPS = 1e-6


class RMSNormalise(torch.autograd.Function):
    """scale u / sqrt(mean u^2 + eps) over the last dimension of u, for a scale that broadcasts against
    u's rows (..., 1). Autograd's own backward of these few products takes about ten passes over u;
    written out it takes three: with f = (mean u^2 + eps)^-1/2 and g the output's gradient,
        du = s f (g - u f^2 (g . u) / d),        ds = sum over the rows it scales of f (g . u)."""

    @staticmethod
    def forward(ctx, u: Tensor, scale: Tensor) -> Tensor:
        factor = torch.rsqrt(torch.linalg.vector_norm(u, dim=-1, keepdim=True).square() / u.shape[-1] + NORM_EPS)
        ctx.save_for_backward(u, factor, scale)
        return u * (factor * scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        u, factor, scale = ctx.saved_tensors
        along = torch.linalg.vecdot(grad, u).unsqueeze(-1)
        grad_u = torch.addcmul(grad, u, along * factor.square() / u.shape[-1], value=-1).mul_(factor * scale)
        return grad_u, (along * factor).sum_to_size(scale.shape)


class QKNormAttention(DotProductAttention):
    name = "qk_norm"

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, rope_base: Annotated[float, ROPE_BASE] = 10000.0) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        self.rotary = Rotary(self.d_head, max_seq_len, rope_base)
        self.log_scale = nn.Parameter(torch.zeros(n_heads))
        self.register_buffer("unit_scale", torch.ones(1, 1, 1), persistent=False)  # the keys'

    def queries_keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = super().queries_keys_values(x)
        return RMSNormalise.apply(q, self.log_scale.exp()[:, None, None]), RMSNormalise.apply(k, self.unit_scale), v

    def head_matrices(self) -> None:
        return None
