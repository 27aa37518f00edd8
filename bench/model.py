"""A decoder-only transformer around a pluggable attention variant.

    h_0 = W_E[tokens] (+ W_P[positions] only if learned_positions)
    h_l = h_(l-1) + Attention_l(LN(h_(l-1)))  (+ MLP(LN(.)) if mlp)        l = 1..n_layers
    logits = W_U LN(h_L)

Attention-only by default, as in the seeds; LN is the identity unless layer_norm is set.
Position enters through the variant (RoPE), not through learned absolute positions.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from variants import AttentionVariant


class Block(nn.Module):
    def __init__(self, attention: AttentionVariant, d_model: int, mlp: bool, layer_norm: bool) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.attention = attention
        self.mlp = None
        if mlp:
            self.mlp = nn.Sequential(
                nn.LayerNorm(d_model) if layer_norm else nn.Identity(),
                nn.Linear(d_model, 4 * d_model),
                nn.GELU(),
                nn.Linear(4 * d_model, d_model),
            )

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        update, weights = self.attention(self.attention_norm(x), need_weights)
        x = x + update
        if self.mlp is not None:
            x = x + self.mlp(x)
        return x, weights


class Transformer(nn.Module):
    def __init__(
        self,
        variant: type[AttentionVariant],
        variant_options: dict[str, Any],
        *,
        vocab_size: int,
        n_layers: int,
        d_model: int,
        n_heads: int,
        max_seq_len: int,
        mlp: bool = False,
        layer_norm: bool = False,
        learned_positions: bool = False,
    ) -> None:
        super().__init__()
        self.max_seq_len = max_seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(max_seq_len, d_model) if learned_positions else None
        self.blocks = nn.ModuleList(
            Block(variant(d_model, n_heads, max_seq_len, **variant_options), d_model, mlp, layer_norm)
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.unembed = nn.Linear(d_model, vocab_size, bias=False)
        for layer, block in enumerate(self.blocks):
            block.attention.construct(self, layer)

    @property
    def trainable(self) -> bool:
        """False when every attention layer is set by construction and must not be trained."""
        return any(block.attention.trainable for block in self.blocks)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.forward_with_attention(tokens, need_weights=False)[0]

    def forward_with_attention(self, tokens: Tensor, need_weights: bool = True) -> tuple[Tensor, list[Tensor]]:
        """Logits (batch, T, vocab) and, if asked, each layer's weights (batch, n_heads, T, T)."""
        x, weights = self.residual_stream(tokens, need_weights)
        return self.unembed(self.final_norm(x)), weights

    def attention_patterns(self, tokens: Tensor) -> list[Tensor]:
        """Each layer's attention weights (batch, n_heads, T, T), without computing the logits."""
        return self.residual_stream(tokens, need_weights=True)[1]

    def residual_stream(self, tokens: Tensor, need_weights: bool) -> tuple[Tensor, list[Tensor]]:
        x = self.embed(tokens)
        if self.positions is not None:
            x = x + self.positions.weight[: tokens.shape[1]]
        weights = []
        for block in self.blocks:
            x, layer_weights = block(x, need_weights)
            if need_weights:
                weights.append(layer_weights)
        return x, weights
