"""A decoder-only transformer around a pluggable attention variant.

    h_0 = W_E[tokens] (+ W_P[positions] only if learned_positions)
    h_l = h_(l-1) + Attention_l(LN(h_(l-1)))  (+ MLP(LN(.)) if mlp)        l = 1..n_layers
    MLP(x) = W_out act(W_in x + b_in) + b_out,   act: gelu or relu, width mlp_width (0: 4 d_model)
    logits = W_U LN(h_L)

Attention-only by default, as in the seeds; LN is the identity unless layer_norm is set.
Position enters through the variant (RoPE), not through learned absolute positions.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from variants import AttentionVariant


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class Block(nn.Module):
    def __init__(self, attention: AttentionVariant, d_model: int, mlp: bool, layer_norm: bool, mlp_width: int, mlp_activation: str) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.attention = attention
        self.mlp = None
        if mlp:
            self.mlp = nn.Sequential(
                nn.LayerNorm(d_model) if layer_norm else nn.Identity(),
                nn.Linear(d_model, mlp_width),
                ACTIVATIONS[mlp_activation](),
                nn.Linear(mlp_width, d_model),
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
        mlp_width: int = 0,
        mlp_activation: str = "gelu",
        layer_norm: bool = False,
        learned_positions: bool = False,
    ) -> None:
        super().__init__()
        self.max_seq_len = max_seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(max_seq_len, d_model) if learned_positions else None
        self.blocks = nn.ModuleList(
            Block(variant(d_model, n_heads, max_seq_len, **variant_options), d_model, mlp, layer_norm, mlp_width or 4 * d_model, mlp_activation)
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

    def attention_inputs(self, tokens: Tensor) -> list[Tensor]:
        """What each layer's attention reads: its block's normalised input (batch, T, d_model)."""
        inputs = []
        hooks = [block.attention.register_forward_pre_hook(lambda _, args: inputs.append(args[0])) for block in self.blocks]
        try:
            self.residual_stream(tokens, need_weights=False)
        finally:
            for hook in hooks:
                hook.remove()
        return inputs

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
