"""Rotary position embedding (RoPE), Su et al. 2021.

Each pair of dimensions (2i, 2i+1) of a head vector at position m is rotated by the angle
m * theta_i with theta_i = base^(-2i / d_head). A query rotated to position m and a key rotated
to position n then meet through the rotation by n - m only:

    (R_m q) . (R_n k) = q^T R_(n-m) k

so a dot product of rotated vectors depends on content and relative position, never on absolute
position. Fast pairs (small i) resolve neighbours; slow pairs barely turn over the context and
carry content matches across long distances.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def rotary_frequencies(d_head: int, base: float) -> Tensor:
    """theta_i = base^(-2i / d_head) of each pair i, fastest first, in float64 on the CPU."""
    return base ** (-torch.arange(0, d_head, 2, dtype=torch.float64, device="cpu") / d_head)


class Rotary(nn.Module):
    """Pair (2i, 2i+1) read as the complex number x_2i + i x_(2i+1): the rotation by m theta_i is
    one multiplication by e^(i m theta_i), a single fused kernel forward and backward."""

    def __init__(self, d_head: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if d_head % 2 != 0:
            raise ValueError(f"RoPE needs an even head dimension; got d_head={d_head}")
        self.base = base  # for the naive references, which turn by explicit angles
        # on the ambient device: nothing is allocated when the model is built on "meta" to check a config
        positions = torch.arange(max_seq_len, dtype=torch.float64)
        angles = positions[:, None] * rotary_frequencies(d_head, base).to(positions.device)
        self.register_buffer("rotation", torch.polar(torch.ones_like(angles), angles).to(torch.complex64), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Rotate x (..., T, d_head) as if its first position were `offset`; float32 at least."""
        real = x if x.dtype == torch.float64 else x.float()  # complex32 has too few kernels
        pairs = torch.view_as_complex(real.reshape(*x.shape[:-1], -1, 2))
        rotated = pairs * self.rotation[offset : offset + x.shape[-2]]
        return torch.view_as_real(rotated).flatten(-2).type_as(x)


