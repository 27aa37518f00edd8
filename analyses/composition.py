"""Composition scores between heads of different layers (Elhage et al. 2021, "A Mathematical
Framework for Transformer Circuits"; as TransformerLens's ``all_composition_scores`` computes them).

In TransformerLens's right-multiplying convention (x a row of the stream), head h has the OV
circuit W_V^h W_O^h and the QK circuit W_Q^h (W_K^h)^T, both (d_model, d_model). For an earlier
head a (layer l) and a later head b (layer l' > l), with L = W_V^a W_O^a what a writes:

    C(L, R) = ||L R||_F / (||L||_F ||R||_F)
    Q-composition: R = W_Q^b (W_K^b)^T       a's output feeds b's queries
    K-composition: R = W_K^b (W_Q^b)^T       a's output feeds b's keys
    V-composition: R = W_V^b W_O^b           a's output feeds b's values

A score means something only against chance: the baseline is C of random matrices of the same
shapes, L = A B^T and R = C D^T with A, B, C, D uniform in (d_model, d_head) (ARENA draws a few
hundred such pairs); the report gives its mean and standard deviation. A head that writes
nothing (||L|| = 0) has no score (null).

Rotary: with RoPE the bilinear form between query i and key j is W_Q R_(j-i) W_K^T, so W_Q W_K^T
is only its position-free part (relative offset 0); a head that matches through slow rotary
pairs keeps most of it, one that relies on fast pairs does not. Layer norms are not folded in
(the default model has none). It applies to models of two or more layers whose variant exposes
its per-head matrices (a bilinear score of the stream).
"""
from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch
from torch import Tensor

from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin.plotting import pyplot, save
from plugin.statistics import INTERVAL_NOTE, describe
from plugin import Range

MODES = ("K", "Q", "V")


def composition_scores(left: Tensor, right: Tensor) -> Tensor:
    """||L R||_F / (||L||_F ||R||_F) for left (..., n, n) and right (..., n, n), broadcast."""
    product = torch.linalg.matrix_norm(left @ right)
    return product / (torch.linalg.matrix_norm(left) * torch.linalg.matrix_norm(right))


def circuits(matrices) -> dict[str, Tensor]:
    """The per-head right-hand circuits of each mode and the OV circuit, each (heads, d_model, d_model)."""
    qk = matrices.W_Q @ matrices.W_K.transpose(-2, -1)
    ov = matrices.W_V @ matrices.W_O
    return {"Q": qk, "K": qk.transpose(-2, -1), "V": ov, "OV": ov}


def random_baseline(d_model: int, left_dim: int, right_dim: int, samples: int, generator: torch.Generator) -> tuple[float, float]:
    """Mean and standard deviation of the score of random low-rank pairs of the given shapes."""
    def low_rank(width: int) -> Tensor:
        factors = torch.rand(2, samples, d_model, width, generator=generator, dtype=torch.float64) * 2 - 1
        return factors[0] @ factors[1].transpose(-2, -1)

    scores = composition_scores(low_rank(left_dim), low_rank(right_dim))
    return scores.mean().item(), scores.std().item()


class Composition(Analysis):
    name = "composition"
    title = "Composition scores"
    report_order = 50

    def __init__(self, *, baseline_samples: Annotated[int, Range(10, 10000)] = 300) -> None:
        self.baseline_samples = baseline_samples

    def applies(self, run: TrainedRun) -> str | None:
        if len(run.attention_layers) < 2:
            return "composition needs two layers or more"
        if any(layer.head_matrices() is None for layer in run.attention_layers):
            return "the variant's scores are not a bilinear form of the stream (no per-head W_Q, W_K, W_V, W_O)"
        return None

    def measure(self, run: TrainedRun) -> Measurement:
        generator = run.stream(f"analysis/{self.name}")
        per_layer = [layer.head_matrices() for layer in run.attention_layers]
        layer_circuits = [{mode: circuit.double().cpu() for mode, circuit in circuits(m).items()} for m in per_layer]
        d_model = per_layer[0].W_Q.shape[1]
        baselines: dict[tuple[int, int], tuple[float, float]] = {}
        rows = []
        for left_layer, left in enumerate(layer_circuits):
            for right_layer in range(left_layer + 1, len(layer_circuits)):
                shapes = (per_layer[left_layer].W_V.shape[-1], per_layer[right_layer].W_Q.shape[-1])
                if shapes not in baselines:
                    baselines[shapes] = random_baseline(d_model, *shapes, self.baseline_samples, generator)
                mean, std = baselines[shapes]
                for mode in MODES:
                    scores = composition_scores(left["OV"][:, None], layer_circuits[right_layer][mode][None])
                    for (a, b), score in zip(torch.cartesian_prod(torch.arange(scores.shape[0]), torch.arange(scores.shape[1])).tolist(), scores.flatten().tolist()):
                        rows.append({"mode": mode, "left": f"L{left_layer}H{a}", "right": f"L{right_layer}H{b}", "left_layer": left_layer,
                                     "right_layer": right_layer, "score": score, "baseline_mean": mean, "baseline_std": std})  # fmt: skip
        return Measurement(rows)

    def section(self, data: SectionData) -> list[Block]:
        rows = data.rows.dropna(subset=["score"])
        best = rows.loc[rows.groupby(["run", "mode"])["score"].idxmax()]
        best = best.assign(sigmas=(best["score"] - best["baseline_mean"]) / best["baseline_std"], pair=best["left"] + "→" + best["right"])
        table = (
            best.groupby(["setting", "task", "mode"])
            .agg(best_pair=("score", describe), baseline=("baseline_mean", "mean"), baseline_std=("baseline_std", "mean"),
                 sigmas_above=("sigmas", "mean"), pairs=("pair", lambda p: ", ".join(f"{pair}×{n}" for pair, n in p.value_counts().items())))
            .reset_index()
            .round({"baseline": 3, "baseline_std": 3, "sigmas_above": 1})
        )  # fmt: skip
        blocks: list[Block] = [
            "Each run's highest-scoring pair of heads (earlier layer → later layer) per mode, "
            f"{INTERVAL_NOTE}, against the random baseline of the same shapes (mean, standard deviation) and how many "
            "of its standard deviations the best pair lies above it. Pairs: the best pair, × the seeds where it was.",
            table,
            *verdicts(table),
        ]
        for run, title, path in data.examples():
            run_rows = rows[(rows["run"] == run.run) & (rows["left_layer"] == 0) & (rows["right_layer"] == 1)]
            if len(run_rows):
                heatmaps(run_rows, title, path)
                blocks.append(Figure(path, f"{title}: layer-0 × layer-1 composition scores per mode (the colour scale's midpoint is the random baseline)."))
        return blocks


def verdicts(table: pd.DataFrame) -> list[str]:
    """One sentence per setting x task: the mode whose best pair stands furthest above its baseline."""
    sentences = []
    for (setting, task), group in table.groupby(["setting", "task"]):
        top = group.loc[group["sigmas_above"].idxmax()]
        others = "; ".join(f"{row.mode}: {row.best_pair}" for row in group.itertuples() if row.mode != top["mode"])
        sentences.append(
            f"{setting} on {task} composes mainly by {top['mode']}-composition: best pair {top['best_pair']}, "
            f"{top['sigmas_above']:.1f} baseline standard deviations above the baseline {top['baseline']:.3f} ({others})."
        )
    return sentences


def heatmaps(rows: pd.DataFrame, title: str, path):
    plt = pyplot()
    figure, axes = plt.subplots(1, len(MODES), figsize=(3.6 * len(MODES), 3.2), squeeze=False, constrained_layout=True)
    baseline = rows["baseline_mean"].iloc[0]
    from matplotlib.colors import TwoSlopeNorm  # loaded with the figure, not the module

    norm = TwoSlopeNorm(vmin=0, vcenter=baseline, vmax=max(rows["score"].max(), 2 * baseline))
    image = None
    for axis, mode in zip(axes[0], MODES):
        grid = rows[rows["mode"] == mode].pivot(index="left", columns="right", values="score")
        image = axis.imshow(grid.to_numpy(dtype=float), cmap="RdBu_r", norm=norm, interpolation="nearest")
        axis.set_xticks(range(grid.shape[1]), grid.columns, rotation=90, fontsize=8)
        axis.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
        axis.set_title(f"{mode}-composition", fontsize=10)
        axis.grid(False)
    axes[0][0].set_ylabel("earlier head (writes)")
    axes[0][len(MODES) // 2].set_xlabel("later head (reads)")
    figure.colorbar(image, ax=axes, shrink=0.8, label="composition score")
    figure.suptitle(title, fontsize=10)
    return save(figure, path)
