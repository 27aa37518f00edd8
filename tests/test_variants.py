"""What the shipped variants must be beyond the contract every variant meets (bench/contract/test_variants.py,
run over all of them by the default test command): the refusals, in one line, of configurations a
variant cannot honour."""
from __future__ import annotations

import pytest

from bench.contract.test_variants import D_MODEL, MAX_SEQ_LEN, N_HEADS
from bench.core.config import VARIANT_ARGUMENTS, options_schema
from variants import VARIANTS, AttentionVariant


def test_standard_is_registered():
    assert "standard" in VARIANTS


def test_an_unknown_kind_of_weight_rows_is_refused():
    with pytest.raises(TypeError, match="weight_rows='probabilities' is unknown; allowed: distribution, gates, difference"):
        type("Undeclared", (AttentionVariant,), {"weight_rows": "probabilities"})


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
