"""The contract every registered variant meets, a user's plug-ins included (bench/contract/__init__.py):
shapes, causality, the training path against the explicit one, its weights' rows, gradients to every
parameter, determinism, typed options; and its training path against its own naive float64
reference (``AttentionVariant.reference``, written in the variant's file from its docstring, from the
pieces of variants/naive.py, and sharing no code with the fast path: flash-linear-attention's rule),
outputs and gradients of every parameter and of the input, at T = 1, a short T, and a T that is no
multiple of any block size (triple's 16 and 64, sigmoid's 128, simplicial's 16, linear's 64) and
longer than every default window. Memory from torch.empty, empty_like and Tensor.new_empty is filled
with NaN, so that a fast path reading memory it never wrote fails.
"""
from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor

from bench.core.config import VARIANT_ARGUMENTS, options_schema
from bench.external import load_external
from variants import VARIANTS, AttentionVariant
from variants.rope import Rotary

load_external()  # the user's plug-ins, named in the environment or by installed packages, join VARIANTS

# small enough to be quick, large enough for every registered variant (the constructed circuits included)
D_MODEL, N_HEADS, MAX_SEQ_LEN, SEQ_LEN, BATCH = 48, 4, 16, 12, 3
# the reference comparison: d_head 8, and lengths as the docstring says
REFERENCE_D_MODEL, REFERENCE_N_HEADS, REFERENCE_BATCH = 16, 2, 2
LENGTHS = [1, 13, 150]
PARAMETER_SCALE = 0.3  # every parameter redrawn, so that no zero bias or unit gain hides an error


def make(name: str, seed: int = 0) -> AttentionVariant:
    torch.manual_seed(seed)
    return VARIANTS[name](D_MODEL, N_HEADS, MAX_SEQ_LEN).double()


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, SEQ_LEN, D_MODEL, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


all_variants = pytest.mark.parametrize("name", sorted(VARIANTS))


@all_variants
def test_output_shape_and_weights_shape(name):
    output, weights = make(name)(inputs(), need_weights=True)
    assert output.shape == (BATCH, SEQ_LEN, D_MODEL)
    assert weights.shape == (BATCH, N_HEADS, SEQ_LEN, SEQ_LEN)
    assert make(name)(inputs())[1] is None


@all_variants
def test_training_path_equals_weights_path(name):
    variant = make(name)
    fast, _ = variant(inputs())
    explicit, _ = variant(inputs(), need_weights=True)
    torch.testing.assert_close(fast, explicit)


@all_variants
def test_causal(name):
    variant = make(name)
    x = inputs()
    t = SEQ_LEN // 2
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
    before, weights = variant(x, need_weights=True)
    after, _ = variant(changed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1])
    assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :])
    assert torch.all(weights.triu(1) == 0)


def declaring(weight_rows: str) -> pytest.MarkDecorator:
    """The registered variants whose rows of attention weights are of this kind (AttentionVariant.weight_rows)."""
    return pytest.mark.parametrize("name", sorted(name for name, variant in VARIANTS.items() if variant.weight_rows == weight_rows))


@declaring("distribution")
def test_attention_rows_sum_to_one(name):
    _, weights = make(name)(inputs(), need_weights=True)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(BATCH, N_HEADS, SEQ_LEN, dtype=torch.float64))


@declaring("gates")
def test_gate_weights_lie_between_0_and_1(name):
    _, weights = make(name)(inputs(), need_weights=True)
    assert torch.all((weights >= 0) & (weights <= 1))


@declaring("difference")
def test_difference_weights_sum_alike_in_every_row_of_a_head(name):
    _, weights = make(name)(inputs(), need_weights=True)
    sums = weights.sum(-1)
    torch.testing.assert_close(sums, sums[:1, :, :1].expand_as(sums))


@all_variants
def test_gradients_reach_every_parameter(name):
    variant = make(name)
    output, _ = variant(inputs())
    output.square().sum().backward()
    for parameter_name, parameter in variant.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@all_variants
def test_same_seed_same_output(name):
    torch.testing.assert_close(make(name, seed=5)(inputs())[0], make(name, seed=5)(inputs())[0], rtol=0, atol=0)
    assert not torch.allclose(make(name, seed=5)(inputs())[0], make(name, seed=6)(inputs())[0])


@all_variants
def test_an_output_does_not_depend_on_earlier_calls(name):
    variant, x = make(name), inputs()
    short = x[:, : SEQ_LEN // 2]
    variant(x)
    torch.testing.assert_close(variant(short)[0], make(name)(short)[0], rtol=0, atol=0)


@all_variants
def test_options_are_typed_config_keys(name):
    schema = options_schema(VARIANTS[name], skip=VARIANT_ARGUMENTS)
    assert schema().name == name


@pytest.fixture(autouse=True)
def nan_filled_empty(monkeypatch):
    """torch.empty, torch.empty_like and Tensor.new_empty hand out floating memory full of NaN."""
    for owner, name in ((torch, "empty"), (torch, "empty_like"), (torch.Tensor, "new_empty")):
        allocate = getattr(owner, name)

        @functools.wraps(allocate)
        def allocate_nan(*args, _allocate=allocate, **kwargs):
            tensor = _allocate(*args, **kwargs)
            return tensor.fill_(math.nan) if tensor.is_floating_point() else tensor

        monkeypatch.setattr(owner, name, allocate_nan)


def test_uninitialised_memory_reads_as_nan():
    like = torch.zeros(3, dtype=torch.float64)
    for tensor in (torch.empty(3), torch.empty_like(like), like.new_empty(3)):
        assert tensor.isnan().all()


def rotates(variant: AttentionVariant) -> bool:
    """RoPE's tables are single precision (variants/rope.py): a variant that rotates agrees with its
    float64 reference to about 1e-7, any other to about 1e-12."""
    return any(isinstance(module, Rotary) for module in variant.modules())


def build(name: str, **options) -> AttentionVariant:
    torch.manual_seed(0)
    variant_class = VARIANTS[name]
    d_model = max(REFERENCE_D_MODEL, math.ceil(variant_class.least_d_model(max(LENGTHS)) / REFERENCE_N_HEADS) * REFERENCE_N_HEADS)
    variant = variant_class(d_model, REFERENCE_N_HEADS, max(LENGTHS), **options).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in variant.parameters():
            parameter.copy_(PARAMETER_SCALE * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return variant


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_registered_variant_defines_a_working_reference(name):
    variant = build(name)
    y = variant.reference(torch.randn(REFERENCE_BATCH, 5, variant.d_model, dtype=torch.float64))
    assert y.shape == (REFERENCE_BATCH, 5, variant.d_model) and y.dtype == torch.float64 and y.isfinite().all()


def output_and_gradients(output: Tensor, variant: AttentionVariant, x: Tensor, grad_output: Tensor) -> dict[str, Tensor]:
    names, parameters = zip(*variant.named_parameters())
    gradients = torch.autograd.grad(output, (x, *parameters), grad_output, allow_unused=True, materialize_grads=True)
    return {"output": output.detach(), "input": gradients[0], **dict(zip(names, gradients[1:]))}


def assert_training_path_matches_the_reference(variant: AttentionVariant, seq_len: int) -> None:
    generator = torch.Generator().manual_seed(2)
    width = variant.d_model
    x = torch.randn(REFERENCE_BATCH, seq_len, width, generator=generator, dtype=torch.float64, requires_grad=True)
    grad_output = torch.randn(REFERENCE_BATCH, seq_len, width, generator=generator, dtype=torch.float64)
    fast = output_and_gradients(variant(x)[0], variant, x, grad_output)
    naive = output_and_gradients(variant.reference(x), variant, x, grad_output)
    tolerance = 1e-6 if rotates(variant) else 1e-10
    for key, expected in naive.items():
        scale = expected.abs().max().item()
        assert scale > 0 or key != "output", "a zero output compares nothing"
        torch.testing.assert_close(fast[key], expected, rtol=tolerance, atol=tolerance * max(scale, 1.0), msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("seq_len", LENGTHS)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_training_path_matches_the_naive_reference(name, seq_len):
    assert_training_path_matches_the_reference(build(name), seq_len)
