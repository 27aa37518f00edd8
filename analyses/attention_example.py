"""Attention patterns of one held-out sequence, every head of every layer (TransformerLens's
convention: query rows, key columns, one panel per head labelled L{layer}H{head}).

For each head it also records two summaries of its pattern over the sequence's queries i, on the
attention shares p_ij = |a_ij| / sum_j |a_ij| (``TrainedRun.attention_shares``: the weights
themselves for softmax attention; for sigmoid's gates or differential's signed weights, where the
row's weight of either sign lies, so that both stay in their range for every variant):

    mean distance  (1/T) sum_i sum_j p_ij (i - j)          how far back the head looks, in [0, T - 1]
    entropy        (1/T) sum_i -sum_j p_ij ln p_ij          how spread its attention is, in [0, ln T] nats

The panels draw the weights as the variant computes them (a signed variant's on a diverging scale).
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
from omegaconf import DictConfig

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
        shares = torch.stack([layer[0] for layer in run.attention_shares(tokens)])
        length = weights.shape[-1]
        distance = (torch.arange(length)[:, None] - torch.arange(length)[None, :]).clamp(min=0).double()
        rows = []
        for layer, heads in enumerate(shares):
            for head, pattern in enumerate(heads):
                entropy = -torch.special.xlogy(pattern, pattern).sum(-1).mean().item()
                rows.append({"head": f"L{layer}H{head}", "layer": layer, "head_index": head,
                             "mean_distance": (pattern * distance).sum(-1).mean().item(), "entropy": max(entropy, 0.0)})  # fmt: skip
        return Measurement(rows, {"tokens": tokens[0].cpu(), "weights": weights})

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        index = Range(0)
        if config is None:
            return {"layer": index, "head_index": index, "mean_distance": Range(0), "entropy": Range(0)}
        length = min(self.positions, config.task.seq_len)
        return {"layer": Range(0, config.model.n_layers - 1), "head_index": Range(0, config.model.n_heads - 1),
                "mean_distance": Range(0, length - 1), "entropy": Range(0, math.log(length))}  # fmt: skip

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
    signed = bool((weights < 0).any())
    largest = max(float(weights.abs().max()), 1.0)
    scale = {"cmap": "RdBu_r", "vmin": -largest, "vmax": largest} if signed else {"cmap": "viridis", "vmin": 0, "vmax": largest}
    image = None
    for layer in range(n_layers):
        for head in range(n_heads):
            axis = axes[layer][head]
            image = axis.imshow(weights[layer, head].numpy(), interpolation="nearest", **scale)
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
