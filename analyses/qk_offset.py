"""The rotary QK offset (seed 003, "Interpreting Rotary Embeddings"): how a one-layer RoPE model
finds a fixed relative position.

For each head, with q_i, k_i the pre-rotary query and key at position i and R_i the rotation,
the seed compares, over the positions i of a sequence (the first left out), the pairwise cosine
similarities

    cos(q_i, q_j), cos(R_i q_i, R_j q_j), cos(k_i, k_j), cos(R_i k_i, R_j k_j)   (T-1) x (T-1)
    and of the stacked pre-rotary [q; k]                                       2(T-1) x 2(T-1)

A model trained to output the previous token learns near-constant pre-rotary q and k with an
offset between them, so that the post-rotary score q_i^T R_(j-i) k_j peaks at j = i - 1. The QK
offset of a head, as a number, is where that peak lies:

    offset = the mode over queries i (and sequences) of argmax_(j <= i) (R_i q_i) . (R_j k_j) - i

with the share of queries whose peak is there, and the head's previous-token mass (mean share of
attention on j = i - 1, on the shares |a_ij| / sum_j |a_ij|) to tell which head does the work: the
head with the largest mass, where that mass is over one half, which uniform attention cannot reach.
The matrices are averaged over ``sequences`` test sequences cut to ``positions`` tokens. It applies
to one-layer models whose variant uses RoPE (exposes its queries and keys before and after the
rotation), on at least MIN_POSITIONS = 8 positions: uniform attention over the keys j <= i puts
1/(i + 1) on the previous token, a mean over queries i >= 1 of 0.42 at 3 positions (modular
addition's "a b =", where every head read offset -1 and mass 0.5 whatever it learned) and 0.25 at
8, so below 8 a previous-token head cannot be told from one that spreads evenly.
"""
from __future__ import annotations

from typing import Annotated

import torch
from omegaconf import DictConfig
import torch.nn.functional as F
from torch import Tensor

from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin.plotting import pyplot, save
from plugin.statistics import INTERVAL_NOTE, describe
from plugin import Range

MIN_POSITIONS = 8
WORKING_MASS = 0.5  # a head that does the work puts most of its attention on the previous token
MATRICES = {
    "q_pre": "Q pre-rotary",
    "q_post": "Q post-rotary",
    "k_pre": "K pre-rotary",
    "k_post": "K post-rotary",
    "qk_pre": "Q and K pre-rotary",
}


def cosine_similarity_matrix(vectors: Tensor) -> Tensor:
    """(..., n, d) -> (..., n, n) pairwise cosine similarity."""
    unit = F.normalize(vectors.double(), dim=-1)
    return unit @ unit.transpose(-2, -1)


class QKOffset(Analysis):
    name = "qk_offset"
    title = "Rotary QK offset"
    report_order = 60

    def __init__(self, *, positions: Annotated[int, Range(4, 512)] = 32, sequences: Annotated[int, Range(1, 1024)] = 16) -> None:
        self.positions, self.sequences = positions, sequences

    def applies(self, run: TrainedRun) -> str | None:
        if len(run.attention_layers) != 1:
            return "the seed's analysis is of one-layer models"
        probe = torch.zeros(1, 2, run.model.embed.embedding_dim, device=run.device)
        if run.attention_layers[0].rotary_queries_and_keys(probe) is None:
            return "the variant does not use RoPE"
        positions = min(self.positions, run.test_set(size=1).inputs.shape[1])
        if positions < MIN_POSITIONS:
            return (f"{positions} positions: below {MIN_POSITIONS}, uniform attention puts {uniform_previous_mass(positions):.2f} "
                    "of its weight on the previous token, so a previous-token head cannot be told from an even spread")
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        positions = self.positions if config is None else min(self.positions, config.task.seq_len)
        heads = Range(0) if config is None else Range(0, config.model.n_heads - 1)
        return {"head_index": heads, "offset": Range(-(positions - 1), 0), "share": Range(0, 1), "previous_token_mass": Range(0, 1)}

    def measure(self, run: TrainedRun) -> Measurement:
        tokens = run.test_set(size=self.sequences).inputs[:, : self.positions]
        x = run.model.attention_inputs(tokens)[0]
        q_pre, k_pre, q_post, k_post = (t.double().cpu() for t in run.attention_layers[0].rotary_queries_and_keys(x))
        rest = slice(1, None)  # the seed leaves the first position out
        tensors = {
            "q_pre": cosine_similarity_matrix(q_pre[..., rest, :]).mean(0),
            "q_post": cosine_similarity_matrix(q_post[..., rest, :]).mean(0),
            "k_pre": cosine_similarity_matrix(k_pre[..., rest, :]).mean(0),
            "k_post": cosine_similarity_matrix(k_post[..., rest, :]).mean(0),
            "qk_pre": cosine_similarity_matrix(torch.cat([q_pre[..., rest, :], k_pre[..., rest, :]], dim=-2)).mean(0),
        }
        length = tokens.shape[1]
        scores = (q_post @ k_post.transpose(-2, -1)).masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
        offsets = (scores.argmax(-1) - torch.arange(length))[..., 1:]  # (batch, heads, queries from 1)
        weights = run.attention_shares(tokens)[0]
        previous_mass = weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))
        rows = []
        for head in range(offsets.shape[1]):
            values, counts = offsets[:, head].flatten().unique(return_counts=True)
            mode = values[counts.argmax()].item()
            rows.append({"head": f"L0H{head}", "head_index": head, "offset": mode, "share": counts.max().item() / offsets[:, head].numel(),
                         "previous_token_mass": previous_mass[head].item()})  # fmt: skip
        return Measurement(rows, {name: matrix.float() for name, matrix in tensors.items()})

    def section(self, data: SectionData) -> list[Block]:
        rows = data.rows.assign(working=False)
        largest = rows.loc[rows.groupby("run")["previous_token_mass"].idxmax()]
        rows.loc[largest.index[largest["previous_token_mass"] > WORKING_MASS], "working"] = True
        table = (
            rows.groupby(["setting", "task", "head"])
            .agg(offset=("offset", lambda o: ", ".join(str(v) for v in sorted(o))), share=("share", lambda v: describe(v, bounds=self.bounds("share"))),
                 previous_token_mass=("previous_token_mass", lambda v: describe(v, bounds=self.bounds("previous_token_mass"))), working_in=("working", "sum"))
            .reset_index()
        )  # fmt: skip
        blocks: list[Block] = [
            "Per head: the QK offset (where the post-rotary score q_i · k_j peaks, relative to i; one value per seed), the "
            f"share of queries peaking there and the head's previous-token attention mass ({INTERVAL_NOTE}); "
            f"working_in counts the seeds where the head had the largest previous-token mass and it was over {WORKING_MASS} "
            f"(uniform attention reaches at most {uniform_previous_mass(MIN_POSITIONS):.2f} on the {MIN_POSITIONS} positions or more this needs).",
            table,
        ]
        for run, title, path in data.examples():
            tensors = data.tensors(run.run)
            if tensors:
                similarity_figure(tensors, title, path)
                blocks.append(Figure(path, f"{title}: pairwise cosine similarity across positions 1…T−1, one row per head "
                                           "(the seed's five heatmaps; the last stacks Q above K)."))  # fmt: skip
        return blocks


def uniform_previous_mass(positions: int) -> float:
    """The mean over queries i = 1 .. positions - 1 of uniform causal attention's weight on j = i - 1, 1/(i + 1)."""
    return sum(1 / (i + 1) for i in range(1, positions)) / (positions - 1)


def similarity_figure(tensors: dict[str, Tensor], title: str, path):
    plt = pyplot()
    heads = tensors["q_pre"].shape[0]
    figure, axes = plt.subplots(heads, len(MATRICES), figsize=(2.6 * len(MATRICES) + 0.8, 2.4 * heads), squeeze=False, constrained_layout=True)
    image = None
    for head in range(heads):
        for axis, (name, label) in zip(axes[head], MATRICES.items()):
            image = axis.imshow(tensors[name][head].numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
            axis.set_title(f"L0H{head}: {label}", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(False)
    figure.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    figure.suptitle(title, fontsize=10)
    return save(figure, path)
