"""Attention patterns of one held-out sequence, every head of every layer (TransformerLens's
convention: query rows, key columns, one panel per head labelled L{layer}H{head}).

For each head it also records two summaries of its pattern a_ij over the sequence's queries i:

    mean distance  (1/T) sum_i sum_j a_ij (i - j)          how far back the head looks
    entropy        (1/T) sum_i -sum_j a_ij ln a_ij          how spread its attention is (nats)
"""
from __future__ import annotations

from typing import Annotated

import torch

from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin.plotting import pyplot, save
from plugin import Range


class AttentionExample(Analysis):
    name = "attention_example"
    title = "Attention patterns"
    report_order = 30

    def __init__(self, *, positions: Annotated[int, Range(2, 512)] = 64) -> None:
        self.positions = positions

    def measure(self, run: TrainedRun) -> Measurement:
        tokens = run.test_set(size=1).inputs[:, : self.positions]  # causal attention makes the cut exact
        weights = torch.stack([layer[0] for layer in run.model.attention_patterns(tokens)]).float().cpu()
        length = weights.shape[-1]
        distance = (torch.arange(length)[:, None] - torch.arange(length)[None, :]).clamp(min=0).float()
        rows = []
        for layer, heads in enumerate(weights):
            for head, pattern in enumerate(heads):
                entropy = -(pattern * pattern.clamp_min(1e-30).log()).sum(-1).mean().item()
                rows.append({"head": f"L{layer}H{head}", "layer": layer, "head_index": head,
                             "mean_distance": (pattern * distance).sum(-1).mean().item(), "entropy": entropy})  # fmt: skip
        return Measurement(rows, {"tokens": tokens[0].cpu(), "weights": weights})

    def section(self, data: SectionData) -> list[Block]:
        blocks: list[Block] = []
        for run, title, path in data.examples():
            tensors = data.tensors(run.run)
            if "weights" in tensors:
                heatmaps(tensors["weights"], title, path)
                blocks.append(Figure(path, f"{title}: attention of one test sequence; rows are queries, columns keys, one panel per head."))
        shown = data.rows[data.rows["run"].isin(data.first_seed_per_group()["run"])]
        summary = shown[["setting", "task", "seed", "head", "mean_distance", "entropy"]].round(2)
        if len(summary):
            blocks += ["Per head of the runs shown: the example's mean attention distance (i − j) and entropy (nats).", summary]
        return blocks


def heatmaps(weights: torch.Tensor, title: str, path):
    """A panel per head, with position ticks and one shared colour bar."""
    plt = pyplot()
    n_layers, n_heads, length = weights.shape[0], weights.shape[1], weights.shape[-1]
    figure, axes = plt.subplots(n_layers, n_heads, figsize=(2.4 * n_heads + 0.8, 2.3 * n_layers), squeeze=False, constrained_layout=True)
    ticks = list(range(0, length, max(1, length // 4)))
    image = None
    for layer in range(n_layers):
        for head in range(n_heads):
            axis = axes[layer][head]
            image = axis.imshow(weights[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            axis.set_title(f"L{layer}H{head}", fontsize=9)
            axis.set_xticks(ticks)
            axis.set_yticks(ticks)
            axis.tick_params(labelsize=7)
            axis.grid(False)
    axes[-1][0].set_xlabel("key position")
    axes[-1][0].set_ylabel("query position")
    figure.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    figure.suptitle(title, fontsize=10)
    return save(figure, path)
