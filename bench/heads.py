"""Head scores on the [BOS] + R + R probe (TransformerLens / ARENA conventions).

For each head of each layer, labelled L{layer}H{head}, with weights a[i, j] (query i, key j),
R of length n at positions 1..n and again at n+1..2n:

    previous_token   mean of a[i, i-1] over i >= 1
    duplicate_token  mean of a[i, i-n] over the second copy: the earlier occurrence of my token
    induction        mean of a[i, i-n+1] over the second copy: the token after that occurrence

Duplicate and induction scores average only over positions whose token is unique in R (the
"clean" form), so a perfect head scores 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from tasks import IGNORE_INDEX
from tasks.induction import Induction


@torch.no_grad()
def head_scores(model: nn.Module, vocab_size: int, seq_len: int, generator: torch.Generator, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Scores of every head of `model` on a probe batch of length seq_len (odd: 1 + 2n)."""
    probe = Induction(seq_len=seq_len - (seq_len + 1) % 2, vocab_size=vocab_size, layout="repeat")
    tokens, targets = probe.sample(batch_size, generator)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    weights = model.attention_patterns(tokens.to(device))
    model.train(was_training)
    n = (probe.seq_len - 1) // 2
    second_copy = torch.zeros_like(targets, dtype=torch.bool)
    second_copy[:, n + 1 : 2 * n + 1] = targets[:, n + 1 : 2 * n + 1] != IGNORE_INDEX
    return {
        f"L{layer}H{head}": {
            "previous_token": diagonal_mean(layer_weights[:, head], 1, torch.ones_like(second_copy)),
            "duplicate_token": diagonal_mean(layer_weights[:, head], n, second_copy),
            "induction": diagonal_mean(layer_weights[:, head], n - 1, second_copy),
        }
        for layer, layer_weights in enumerate(weights)
        for head in range(layer_weights.shape[1])
    }


def diagonal_mean(weights: Tensor, offset: int, queries: Tensor) -> float:
    """Mean of weights[b, i, i - offset] over the queries i >= offset selected in queries[b, i]."""
    on_diagonal = weights.diagonal(offset=-offset, dim1=-2, dim2=-1).float()
    selected = queries[:, offset:].to(on_diagonal.device)
    return on_diagonal[selected].mean().item() if selected.any() else float("nan")
