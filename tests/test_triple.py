"""Triple-product attention: exact Gram-determinant scores, the tiled kernel, numerics, bad input.
(The variant contract itself runs in bench/contract/test_variants.py.)"""
from __future__ import annotations

import math

import pytest
import torch

from bench.core.config import ConfigError, validate
from bench.core.job import run
from variants import triple
from variants.tiling import Tiling
from variants.triple import GramAttention, TripleProductAttention, gram_scores

D_MODEL, N_HEADS, MAX_SEQ_LEN = 32, 4, 256  # d_head 8


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make(seed: int = 0, **options) -> TripleProductAttention:
    torch.manual_seed(seed)
    return TripleProductAttention(D_MODEL, N_HEADS, MAX_SEQ_LEN, **options).double()


def explicit_scores(q: torch.Tensor, k: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """-det of the explicit 3 x 3 Gram matrix V V^T of V = (q_i; k_j; r_i), by LU in float64."""
    q, k, r = q.double(), k.double(), r.double()
    vectors = torch.stack(torch.broadcast_tensors(q[..., :, None, :], k[..., None, :, :], r[..., :, None, :]), dim=-2)
    return -torch.linalg.det(vectors @ vectors.transpose(-2, -1))


def assert_relative_error(actual: torch.Tensor, expected: torch.Tensor, bound: float) -> None:
    error = ((actual.double() - expected) / expected).abs().max().item()
    assert error <= bound, f"relative error {error:.2e} > {bound:.0e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scores_are_minus_the_determinant_of_the_gram_matrix(dtype):
    q, k, r = (randn(2, 3, 10, 16, seed=seed, dtype=dtype) for seed in range(3))
    scores = gram_scores(q, k, r)
    assert scores.dtype == dtype and scores.shape == (2, 3, 10, 10)
    assert_relative_error(scores, explicit_scores(q, k, r), 1e-4)


NEAR_DEGENERATE = {  # (q, k, r) from independent draws a, b, c and a small perturbation e
    "r nearly parallel to q": lambda a, b, c, e: (a, b, a + e),
    "k nearly in the plane of q and r": lambda a, b, c, e: (a, 0.3 * a - 2 * c + e, c),
    "k nearly parallel to q": lambda a, b, c, e: (a, 5 * a + e, c),
}


@pytest.mark.parametrize("case", NEAR_DEGENERATE)
@pytest.mark.parametrize("closeness", [1e-2, 1e-4])
def test_scores_stay_exact_near_degenerate_inputs(case, closeness):
    a, b, c = (randn(4, 12, 16, seed=seed) for seed in range(3))
    q, k, r = NEAR_DEGENERATE[case](a, b, c, closeness * randn(4, 12, 16, seed=3))
    assert_relative_error(gram_scores(q, k, r), explicit_scores(q, k, r), 1e-4)


def test_float32_stays_exact_for_a_nearly_flat_query_plane():
    # the per-query plane comes from r_perp, not from the five cancelling terms of the expanded
    # determinant, which lose about 0.5 % here in float32
    q, k = randn(20, 32, seed=0, dtype=torch.float32), randn(30, 32, seed=1, dtype=torch.float32)
    r = q + 1e-2 * randn(20, 32, seed=2, dtype=torch.float32)
    assert_relative_error(gram_scores(q, k, r), explicit_scores(q, k, r), 1e-4)


def test_scores_are_never_positive_and_zero_for_keys_in_the_plane():
    q, k, r = (randn(3, 40, 16, seed=seed) for seed in range(3))
    in_plane = randn(3, 40, 1, seed=3) * q + randn(3, 40, 1, seed=4) * r
    natural_scale = (q * q).sum(-1)[..., None] * (k * k).sum(-1)[..., None, :] * (r * r).sum(-1)[..., None]
    assert torch.all(gram_scores(q, k, r) <= 1e-12 * natural_scale)
    assert gram_scores(q, torch.cat([k, in_plane], dim=-2), r).max() <= 1e-12 * natural_scale.max()
    diagonal = gram_scores(q, in_plane, r).diagonal(dim1=-2, dim2=-1)  # key i lies in query i's plane
    torch.testing.assert_close(diagonal, torch.zeros_like(diagonal), rtol=0, atol=1e-12 * natural_scale.max().item())


def test_a_common_shift_of_every_position_leaves_the_scores_unchanged():
    variant, x = make(), randn(2, 30, D_MODEL, seed=1)
    q, k, r, _ = variant.heads(x)
    shifted_q, shifted_k, shifted_r, _ = variant.heads(x, offset=101)
    assert not torch.allclose(q, shifted_q, atol=1e-2), "the shift must move the rotated vectors"
    scores = gram_scores(q, k, r)
    # the rotation tables are single precision, hence the tolerance
    torch.testing.assert_close(gram_scores(shifted_q, shifted_k, shifted_r), scores, rtol=1e-5, atol=1e-5 * scores.abs().max().item())


def test_weights_are_the_causal_softmax_of_minus_det_times_d_head_to_the_minus_1_5():
    variant, x = make(), randn(2, 12, D_MODEL, seed=1)
    q, k, r, _ = variant.heads(x)
    future = torch.ones(12, 12, dtype=torch.bool).triu(1)
    expected = (explicit_scores(q, k, r) * variant.d_head**-1.5).masked_fill(future, -math.inf).softmax(-1)
    _, weights = variant(x, need_weights=True)
    torch.testing.assert_close(weights, expected)


def test_learnable_temperature_starts_at_the_seeds_scale_and_is_learned():
    x = randn(2, 12, D_MODEL, seed=1)
    seed_scale, learnable = make(), make(learnable_temperature=True)
    assert learnable.log_temperature.shape == (N_HEADS,)
    torch.testing.assert_close(learnable(x)[0], seed_scale(x)[0])
    learnable(x)[0].square().sum().backward()
    assert learnable.log_temperature.grad.abs().min() > 0
    with torch.no_grad():
        learnable.log_temperature[1] = math.log(3.0)
    q, k, r, _ = learnable.heads(x)
    sharper = (3 * gram_scores(q, k, r)[:, 1] * learnable.d_head**-1.5).masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), -math.inf)
    _, weights = learnable(x, need_weights=True)
    torch.testing.assert_close(weights[:, 1], sharper.softmax(-1))
    torch.testing.assert_close(learnable(x)[0], learnable(x, need_weights=True)[0])


def parameter_and_input_gradients(variant: TripleProductAttention, x: torch.Tensor, need_weights: bool) -> list[torch.Tensor]:
    variant.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    output, _ = variant(x, need_weights)
    (output * randn(*output.shape, seed=9)).sum().backward()
    return [output.detach(), x.grad, *(p.grad for p in variant.parameters())]


@pytest.mark.parametrize("rows_per_tile", [1, 5, 12])  # of the 3 x 4 batch*head rows
def test_the_tiled_kernel_equals_the_explicit_path_forward_and_backward(monkeypatch, rows_per_tile):
    monkeypatch.setattr(triple, "TILING", Tiling(query_block=16, tile_elements=0, min_rows=rows_per_tile))
    variant, x = make(learnable_temperature=True), randn(3, 40, D_MODEL, seed=1)  # query blocks of 16, 16 and 8
    with torch.no_grad():
        variant.log_temperature.copy_(randn(N_HEADS, seed=2))
    for fused, explicit in zip(parameter_and_input_gradients(variant, x, False), parameter_and_input_gradients(variant, x, True)):
        torch.testing.assert_close(fused, explicit)


def test_the_kernels_gradients_pass_gradcheck(monkeypatch):
    monkeypatch.setattr(triple, "TILING", Tiling(query_block=triple.TILING.query_block, tile_elements=0, min_rows=1))
    batch_heads, seq_len, d = 2, 9, 3
    inputs = (
        randn(batch_heads, 2 * seq_len, d, seed=0),
        randn(batch_heads, seq_len, seed=1).exp(),
        randn(batch_heads, seq_len, d, seed=2),
        randn(batch_heads, seq_len, seed=3).exp(),
        randn(batch_heads, seq_len, 2, seed=4),
    )
    future = torch.full((3, 3), -math.inf, dtype=torch.float64).triu(1)  # query blocks of 3
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(lambda *tensors: GramAttention.apply(*tensors, future), inputs)


def largest_saved_tensor(variant: TripleProductAttention, x: torch.Tensor, need_weights: bool) -> int:
    sizes = []

    def record(tensor: torch.Tensor) -> torch.Tensor:
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(record, lambda tensor: tensor):
        variant(x.requires_grad_(), need_weights)
    return max(sizes)


def test_the_training_path_keeps_nothing_of_size_t_by_t_for_backward():
    batch, seq_len = 2, 256
    variant, x = make(), randn(batch, seq_len, D_MODEL, seed=1)
    attention_map = batch * N_HEADS * seq_len * seq_len
    assert largest_saved_tensor(variant, x, need_weights=True) >= attention_map  # what the check would catch
    assert largest_saved_tensor(variant, x, need_weights=False) <= attention_map / 8


def test_under_bfloat16_autocast_scores_and_softmax_stay_float32():
    torch.manual_seed(0)
    variant, x = TripleProductAttention(D_MODEL, N_HEADS, MAX_SEQ_LEN), 3 * randn(2, 40, D_MODEL, seed=1, dtype=torch.float32)
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, _, _, _ = variant.heads(x)
        explicit, weights = variant(x, need_weights=True)
        fused, _ = variant(x)
    assert q.dtype == weights.dtype == torch.float32  # upcast after the projections
    assert fused.dtype == torch.bfloat16  # the output projection is left to autocast
    assert torch.isfinite(weights).all() and torch.isfinite(fused).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, N_HEADS, 40))
    torch.testing.assert_close(fused, explicit)
    fused.float().square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in variant.parameters())


def test_float16_is_upcast_where_its_scores_would_overflow():
    torch.manual_seed(0)
    variant = TripleProductAttention(D_MODEL, N_HEADS, MAX_SEQ_LEN).half()
    x = (8 * randn(2, 24, D_MODEL, seed=1)).half()
    q, k, r, _ = variant.heads(x)
    assert q.dtype == torch.float32
    half = [(t.half() * t.half()).sum(-1) for t in (q, k, r)]
    assert torch.isinf(half[0][..., :, None] * half[1][..., None, :] * half[2][..., :, None]).any(), "float16 would overflow"
    assert_relative_error(gram_scores(q, k, r), explicit_scores(q, k, r), 1e-4)
    output, weights = variant(x, need_weights=True)
    assert weights.dtype == torch.float32 and torch.isfinite(weights).all()
    assert output.dtype == torch.float16 and torch.isfinite(output).all()
    torch.testing.assert_close(variant(x)[0], output)


def test_a_head_too_narrow_for_a_gram_matrix_is_refused(make_config):
    message = r"variant=triple needs d_head >= 3 for its 3 x 3 Gram matrix; got d_head=2 \(model.d_model=8 / model.n_heads=4\)$"
    with pytest.raises(ValueError, match=message):
        TripleProductAttention(8, 4, MAX_SEQ_LEN)
    with pytest.raises(ConfigError, match=message):
        validate(make_config("variant=triple", "model.d_model=8", "model.n_heads=4"))


def test_a_run_whose_loss_blows_up_is_recorded_as_diverged(make_config, tiny, tmp_path):
    # without warm-up, a large learning rate grows the projections, and with them the
    # sixth-degree scores, until they overflow float32 within a few steps
    steps = ("train.lr=0.3", "train.warmup_steps=1", "train.steps=30", "train.eval_every=10", "analysis.length_generalisation.factors=[1]")
    record = run(make_config("variant=triple", *tiny, *steps), tmp_path, single_run=False, overrides=[])
    assert record["status"] == "diverged" and record["steps_run"] < 30
