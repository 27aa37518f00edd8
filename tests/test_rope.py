import torch

from variants.rope import Rotary


def test_rotation_keeps_norms_and_depends_on_relative_position_only():
    rotary = Rotary(d_head=16, max_seq_len=128).double()
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 10, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(rotary(q).norm(dim=-1), q.norm(dim=-1))
    scores = rotary(q) @ rotary(k).transpose(-2, -1)
    shifted = rotary(q, offset=37) @ rotary(k, offset=37).transpose(-2, -1)
    torch.testing.assert_close(scores, shifted, rtol=1e-5, atol=1e-5)  # tables are float32


def test_pairs_rotate_at_geometric_frequencies():
    rotary = Rotary(d_head=4, max_seq_len=8, base=100.0)
    x = torch.tensor([1.0, 0.0, 1.0, 0.0]).expand(1, 8, 4)
    rotated = rotary(x)[0]
    angles = torch.arange(8.0)[:, None] * torch.tensor([1.0, 0.1])
    torch.testing.assert_close(rotated[:, 0::2], angles.cos())
    torch.testing.assert_close(rotated[:, 1::2], angles.sin())
