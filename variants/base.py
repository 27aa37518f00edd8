"""The contract every attention variant meets.

A variant is an ``nn.Module`` that maps a residual stream x of shape (batch, T, d_model) to an
update of the same shape, attending causally (position i sees positions j <= i). Subclass
``AttentionVariant``, give the class a ``name`` and it is registered: ``variant=<name>`` selects
it on the command line, and its keyword-only constructor options become its config keys
(``variant.<option>=...``), typed and checked.

    class MyAttention(AttentionVariant):
        name = "mine"

        def __init__(self, d_model: int, n_heads: int, max_seq_len: int, *, temperature: float = 1.0):
            super().__init__(d_model, n_heads, max_seq_len)
            ...

        def forward(self, x, need_weights=False):
            ...
            return y, (weights if need_weights else None)

``forward`` returns the attention weights (batch, n_heads, T, T) only when ``need_weights`` is
true, so that the training path can use a fused kernel that never forms them. What a row of them
is, the variant declares in ``weight_rows`` (a probability distribution over the keys unless it
says otherwise), and the contract test checks that promise.

A variant whose weights are set by construction rather than learned overrides ``construct``,
which the model calls once it is built (it may set the model's embedding and unembedding too),
and ``trainable``, which tells the training loop to leave it as constructed.

Two optional methods open a variant to the analyses: ``head_matrices`` (per-head W_Q, W_K, W_V,
W_O, for composition scores) where its scores are a bilinear form of the stream, and
``rotary_queries_and_keys`` (q and k before and after the rotation) where it uses RoPE.

Every variant writes ``reference(x)``: its output y for x computed naively, in float64 (the layer
and x in float64), straight from the equations in its file's docstring and from its own
parameters, sharing no code with ``forward`` (flash-linear-attention's rule: the pieces are in
variants/naive.py). ``bench/contract/test_variants.py`` holds every registered variant's training
path to it, outputs and gradients, so a new variant file needs no test of its own for its
equations. A ``DotProductAttention`` that changes only ``score_bias`` and ``key_mask`` inherits one.
A variant whose shape grows with the context (a constructed circuit's position codes) says how
wide it must be in ``least_d_model``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from plugin import register

VARIANTS: dict[str, type[AttentionVariant]] = {}
# What a row of the attention weights can be (AttentionVariant.weight_rows):
#   distribution  >= 0 and summing to 1 over the keys j <= i (softmax, or a normalised kernel)
#   gates         each weight in [0, 1], the row's sum free (sigmoid attention)
#   difference    w1 - lambda w2 of two distributions: any sign, every row of a head summing to
#                 the same 1 - lambda (differential attention)
WEIGHT_ROWS = ("distribution", "gates", "difference")


@dataclass
class HeadMatrices:
    """Per-head weights in TransformerLens's right-multiplying convention, x a row of the stream:
    q = x W_Q, k = x W_K, v = x W_V, and the head writes z W_O back; the OV circuit is W_V W_O and
    the position-free QK circuit W_Q W_K^T, both (d_model, d_model)."""

    W_Q: Tensor  # (n_heads, d_model, d_head)
    W_K: Tensor  # (n_heads, d_model, d_head)
    W_V: Tensor  # (n_heads, d_model, d_head)
    W_O: Tensor  # (n_heads, d_head, d_model)

    @classmethod
    def from_linear(cls, query: Tensor, key: Tensor, value: Tensor, out: Tensor, n_heads: int) -> HeadMatrices:
        """From nn.Linear weights: query/key/value (n_heads * d_head, d_model), out (d_model, n_heads * d_head)."""
        def per_head(weight: Tensor) -> Tensor:
            return weight.detach().unflatten(0, (n_heads, -1)).transpose(1, 2)

        return cls(per_head(query), per_head(key), per_head(value), out.detach().T.unflatten(0, (n_heads, -1)))


class AttentionVariant(nn.Module):
    name: ClassVar[str]
    # A control (e.g. position-only attention) exists to show what a task needs; the report marks it
    # and does not rank it with the models.
    is_control: ClassVar[bool] = False
    # Overrides of the default config that the variant needs to be built at all (a constructed
    # circuit's shape); the tests build it with them, and the README lists them.
    required_config: ClassVar[tuple[str, ...]] = ()
    weight_rows: ClassVar[str] = "distribution"  # one of WEIGHT_ROWS

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.weight_rows not in WEIGHT_ROWS:
            raise TypeError(f"{cls.__name__}.weight_rows='{cls.weight_rows}' is unknown; allowed: {', '.join(WEIGHT_ROWS)}")
        register(VARIANTS, "variant", cls)

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"model.d_model={d_model} is not divisible by model.n_heads={n_heads}; "
                f"allowed n_heads: {', '.join(str(h) for h in range(1, d_model + 1) if d_model % h == 0)}"
            )
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.max_seq_len = max_seq_len

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def reference(self, x: Tensor) -> Tensor:
        """y (batch, T, d_model) for x, naively in float64 from the equations (see the module docstring)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no naive reference: write reference(x), its output in float64 from the "
            "equations in its docstring, with the pieces in variants/naive.py"
        )

    @classmethod
    def least_d_model(cls, max_seq_len: int) -> int:
        """The narrowest d_model this variant can be built with at max_seq_len; the tests build it at
        least this wide. 1 unless its shape grows with the context."""
        return 1

    def construct(self, model: nn.Module, layer: int) -> None:
        """Set weights by construction once `model` is built; this variant is block `layer`."""

    @property
    def trainable(self) -> bool:
        return True

    def attention_flops(self, batch: int, seq_len: int) -> int | None:
        """Forward FLOPs of the attention core (projections excluded) on causal input, in the
        FlashAttention convention (the masked half not counted); None to have the speed suite
        count them on the explicit path."""
        return None

    def head_matrices(self) -> HeadMatrices | None:
        """Per-head W_Q, W_K, W_V, W_O, or None where the scores are not a bilinear form of the stream."""
        return None

    def rotary_queries_and_keys(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """(q, k before the rotation, q, k after it), each (batch, n_heads, T, d_head); None without RoPE."""
        return None

    def split_heads(self, x: Tensor) -> Tensor:
        """(batch, T, n_heads * d_head) -> (batch, n_heads, T, d_head)"""
        batch, seq_len, _ = x.shape
        return x.view(batch, seq_len, self.n_heads, -1).transpose(1, 2)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        """(batch, n_heads, T, d_head) -> (batch, T, n_heads * d_head)"""
        return x.transpose(1, 2).flatten(2)


def causal_weights(scores: Tensor, normalise: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """normalise (softmax over the keys by default) of scores (..., T_query, T_key) with the future
    keys j > i set to -inf first, so that they get weight 0."""
    seq_len = scores.shape[-1]
    future = torch.ones(seq_len, seq_len, dtype=torch.bool, device=scores.device).triu(1)
    masked = scores.masked_fill(future, -math.inf)
    return masked.softmax(dim=-1) if normalise is None else normalise(masked)
