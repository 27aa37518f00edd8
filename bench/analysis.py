"""What a job measures after training, for the report: accuracy at longer lengths than trained
on, and one example's attention patterns."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.results import atomic_path
from bench.train import evaluate
from tasks import TASKS, Task

ATTENTION_FILE = "attention.pt"


def length_generalisation(
    model: nn.Module, task: Task, options: dict[str, Any], factors: list[int], batches: int, batch_size: int, seed: int, device: torch.device
) -> list[dict[str, Any]]:
    """Evaluate at factor × the training length for each factor, on fresh held-out batches
    (the eval stream's seed: at factor 1 these are the training run's own eval batches)."""
    points = []
    for factor in factors:
        length = factor * task.seq_len
        longer = TASKS[task.name](**{**options, "seq_len": length})
        stream = torch.Generator().manual_seed(2 * seed + 1)
        eval_batches = [tuple(t.to(device) for t in longer.sample(batch_size, stream)) for _ in range(batches)]
        points.append({"factor": factor, "length": length, **vars(evaluate(model, eval_batches))})
    return points


@torch.no_grad()
def save_attention_example(model: nn.Module, task: Task, positions: int, seed: int, device: torch.device, directory: Path) -> Path:
    """Save the attention weights (layers, heads, T, T) of one held-out sequence, cut to its first
    `positions` tokens (causal attention makes the cut exact), for the report's heatmaps."""
    tokens, _ = task.sample(1, torch.Generator().manual_seed(2 * seed + 1))
    tokens = tokens[:, :positions].to(device)
    was_training = model.training
    model.eval()
    weights = model.attention_patterns(tokens)
    model.train(was_training)
    path = directory / ATTENTION_FILE
    with atomic_path(path) as temporary:
        torch.save({"tokens": tokens[0].cpu(), "weights": torch.stack([w[0] for w in weights]).float().cpu()}, temporary)
    return path
