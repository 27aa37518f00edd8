"""What the hand-coded circuits share: attention heads of their own width (``head_dim``, not
d_model / n_heads) whose weights are set by construction once the model is built, the token codes
they write into the stream, and the checks that the model can hold them.

A constructed variant subclasses ``ConstructedAttention`` and writes ``check_limits`` (refuse what
the construction cannot honour, with the limit) and ``build`` (set this layer's weights). Head 0
of layers 0 and 1 carries the circuit; spare heads keep random Q/K/V but write nothing (their
columns of W_O are zero), and so do layers after the first two, so that fine-tuning
(``finetune=true``) can recruit them. ``ablate=layer0_ov`` / ``layer1_ov`` zeroes that layer's W_O,
the proof that the circuit is real.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from variants.base import AttentionVariant, HeadMatrices, causal_weights

ABLATIONS = ("none", "layer0_ov", "layer1_ov")


def token_codes(vocab_size: int, dims: int) -> Tensor:
    """One code per token in R^dims: one-hot when the vocabulary fits, otherwise random unit vectors
    (overlap about 1/sqrt(dims)) drawn from torch's global RNG, so that the run's seed fixes them."""
    if vocab_size <= dims:
        return torch.eye(vocab_size, dims)
    return F.normalize(torch.randn(vocab_size, dims), dim=-1)


def check_model_family(model: nn.Module, learned_positions: bool) -> None:
    """The construction writes the whole stream by hand: two layers at least, nothing else touching
    it, and positions from learned (constructed) embeddings exactly when the circuit uses them."""
    n_layers = len(model.blocks)
    if n_layers < 2:
        raise ValueError(f"model.n_layers={n_layers}: the circuit needs a first layer and an induction layer; allowed: n_layers >= 2")
    for key, present in (("model.mlp", any(block.mlp is not None for block in model.blocks)),
                         ("model.layer_norm", not isinstance(model.final_norm, nn.Identity))):  # fmt: skip
        if present:
            raise ValueError(f"{key}=true: the hand-coded circuit is attention-only; allowed: {key}=false")
    if (model.positions is not None) != learned_positions:
        raise ValueError(
            f"model.learned_positions={str(model.positions is not None).lower()}: this circuit takes its positions "
            f"{'from constructed position embeddings' if learned_positions else 'from RoPE'}; "
            f"allowed: model.learned_positions={str(learned_positions).lower()}"
        )


class ConstructedAttention(AttentionVariant):
    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, head_dim: int, finetune: bool, ablate: str) -> None:
        super().__init__(d_model, n_heads, max_seq_len)
        if ablate not in ABLATIONS:
            raise ValueError(f"variant.ablate='{ablate}' is unknown; allowed: {', '.join(ABLATIONS)}")
        self.head_dim, self.finetune, self.ablate = head_dim, finetune, ablate
        width = n_heads * head_dim
        self.query = nn.Linear(d_model, width, bias=False)
        self.key = nn.Linear(d_model, width, bias=False)
        self.value = nn.Linear(d_model, width, bias=False)
        self.out = nn.Linear(width, d_model, bias=False)

    @property
    def trainable(self) -> bool:
        return self.finetune

    def rotate(self, heads: Tensor) -> Tensor:
        """The position signal applied to queries and keys: none here; the RoPE circuit rotates."""
        return heads

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        q, k, v = (self.split_heads(projection(x)) for projection in (self.query, self.key, self.value))
        q, k = self.rotate(q), self.rotate(k)
        if not need_weights:
            return self.out(self.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True))), None
        weights = causal_weights(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim))
        return self.out(self.merge_heads(weights @ v)), weights

    def head_matrices(self) -> HeadMatrices:
        return HeadMatrices.from_linear(self.query.weight, self.key.weight, self.value.weight, self.out.weight, self.n_heads)

    def attention_flops(self, batch: int, seq_len: int) -> int:
        return 4 * batch * self.n_heads * seq_len**2 * self.head_dim // 2

    def construct(self, model: nn.Module, layer: int) -> None:
        """Check that the model can hold the circuit, then set this layer's part of it."""
        if layer == 0:
            self.check_limits(model)
        if self.out.weight.is_meta:  # a validation build: the checks are all it needs
            return
        with torch.no_grad():
            self.out.weight.zero_()  # spare heads, and layers after the circuit's, write nothing
            self.build(model, layer)
            if self.ablate == f"layer{layer}_ov":
                self.out.weight.zero_()

    def check_limits(self, model: nn.Module) -> None:
        raise NotImplementedError

    def build(self, model: nn.Module, layer: int) -> None:
        raise NotImplementedError

    def cleared_head_rows(self, projection: nn.Linear) -> Tensor:
        """Head 0's rows of a query/key/value projection, cleared for the construction to fill."""
        rows = projection.weight[: self.head_dim]
        rows.zero_()
        return rows

    def read_and_write(self, read: slice, write: slice, scale: float) -> None:
        """Head 0's OV circuit: read a code of width k from `read` at the attended position and write
        scale times it into `write`."""
        width = read.stop - read.start
        identity = torch.eye(width, device=self.value.weight.device)
        self.cleared_head_rows(self.value)[:width, read] = identity
        self.out.weight[write, :width] = scale * identity
