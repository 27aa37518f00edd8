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

``forward`` returns the attention weights (batch, n_heads, T, T), rows summing to 1, only when
``need_weights`` is true, so that the training path can use a fused kernel that never forms them.

A variant whose weights are set by construction rather than learned overrides ``construct``,
which the model calls once it is built (it may set the model's embedding and unembedding too),
and ``trainable``, which tells the training loop to leave it as constructed.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

VARIANTS: dict[str, type[AttentionVariant]] = {}


class AttentionVariant(nn.Module):
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in VARIANTS:
                raise TypeError(f"variant name '{cls.name}' is registered twice")
            VARIANTS[cls.name] = cls

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

    def construct(self, model: nn.Module, layer: int) -> None:
        """Set weights by construction once `model` is built; this variant is block `layer`."""

    @property
    def trainable(self) -> bool:
        return True

    def split_heads(self, x: Tensor) -> Tensor:
        """(batch, T, n_heads * d_head) -> (batch, n_heads, T, d_head)"""
        batch, seq_len, _ = x.shape
        return x.view(batch, seq_len, self.n_heads, -1).transpose(1, 2)

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        """(batch, n_heads, T, d_head) -> (batch, T, n_heads * d_head)"""
        return x.transpose(1, 2).flatten(2)


def causal_softmax(scores: Tensor) -> Tensor:
    """Softmax over keys j <= i of scores (..., T_query, T_key); future keys get weight 0."""
    seq_len = scores.shape[-1]
    future = torch.ones(seq_len, seq_len, dtype=torch.bool, device=scores.device).triu(1)
    return scores.masked_fill(future, -math.inf).softmax(dim=-1)
