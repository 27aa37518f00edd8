"""The contract every registered variant meets (run over all of them automatically)."""
from __future__ import annotations

import pytest
import torch

from bench.core.config import options_schema, VARIANT_ARGUMENTS
from variants import VARIANTS, AttentionVariant

# small enough to be quick, large enough for every registered variant (the constructed circuits included)
D_MODEL, N_HEADS, MAX_SEQ_LEN, SEQ_LEN, BATCH = 48, 4, 16, 12, 3


def make(name: str, seed: int = 0) -> AttentionVariant:
    torch.manual_seed(seed)
    return VARIANTS[name](D_MODEL, N_HEADS, MAX_SEQ_LEN).double()


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(BATCH, SEQ_LEN, D_MODEL, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


all_variants = pytest.mark.parametrize("name", sorted(VARIANTS))


def test_standard_is_registered():
    assert "standard" in VARIANTS


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


def test_an_unknown_kind_of_weight_rows_is_refused():
    with pytest.raises(TypeError, match="weight_rows='probabilities' is unknown; allowed: distribution, gates, difference"):
        type("Undeclared", (AttentionVariant,), {"weight_rows": "probabilities"})


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


def test_indivisible_heads_are_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match=r"model.d_model=30 is not divisible by model.n_heads=4; allowed n_heads: 1, 2, 3, 5"):
        VARIANTS["standard"](30, 4, MAX_SEQ_LEN)


@pytest.mark.parametrize(
    "name, d_model, n_heads, options, message",
    [
        ("differential", 24, 4, {}, r"d_head must be a multiple of 4; got d_head=6 .*; allowed n_heads: 1, 2, 3, 6$"),
        ("simplicial", 4, 2, {}, r"d_head must be at least 3; got d_head=2 .*; allowed: n_heads <= 1 dividing d_model$"),
        ("simplicial", D_MODEL, N_HEADS, {"score": "cubic"}, r"^variant.score='cubic' is unknown; allowed: determinant, trilinear$"),
    ],
)
def test_a_configuration_a_variant_cannot_honour_is_refused_in_one_line(name, d_model, n_heads, options, message):
    with pytest.raises(ValueError, match=message) as raised:
        VARIANTS[name](d_model, n_heads, MAX_SEQ_LEN, **options)
    assert "\n" not in str(raised.value)


def test_an_option_without_default_cannot_be_registered():
    class NoDefault(AttentionVariant):
        def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, width: int) -> None:
            super().__init__(d_model, n_heads, max_seq_len)

    NoDefault.name = "no_default"
    with pytest.raises(TypeError, match="keyword-only"):
        options_schema(NoDefault, skip=VARIANT_ARGUMENTS)
