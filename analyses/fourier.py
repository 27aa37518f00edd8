"""The Fourier analysis of a model trained on modular addition (Nanda et al. 2023, "Progress
measures for grokking via mechanistic interpretability", arXiv:2301.05217; the TransformerLens
grokking demo): a model that has grokked computes a + b mod p with a few key frequencies.

Fourier basis of Z_p: the orthonormal rows, over x = 0 .. p-1,

    1 / sqrt(p),   sqrt(2/p) cos(w x),   sqrt(2/p) sin(w x),     w = 2 pi k / p,  k = 1 .. floor(p/2)

(for even p, k = p/2 has only its cosine, (-1)^x / sqrt(p)).

Embedding. With E the embedding rows of the residues 0 .. p-1 (p x d_model) and B the basis
(p x p), the embedding in the Fourier basis is B E, and its norm at frequency k is

    n_k = || (B E)_(cos k, sin k) ||_F          (n_0: the constant row, E's mean over residues)

By Parseval sum_k n_k^2 = ||E||_F^2, so each frequency's share of the centred embedding's energy
is s_k = n_k^2 / sum_(j >= 1) n_j^2. The key frequencies are the fewest k >= 1, largest n_k
first, whose shares add up to at least ``key_share`` (0.9): a sparse embedding has a handful (the
paper's run 14, 35, 41, 42, 52), an unstructured one dozens.

Neurons. For each MLP neuron, N(a, b) is its activation at "=" over all p² inputs "a b =", and
C = B N B^T its 2D Fourier transform. The terms 1, cos(wa), sin(wa), cos(wb), sin(wb) and their
four products are the 3 x 3 block of C on rows and columns {1, cos k, sin k}, so the fraction of
the neuron's variance they explain (the R² of a least-squares fit on those nine functions) is

    r_k = sum_(i, j in {1, cos k, sin k}) C_ij^2 - C_(1,1)^2      over      sum_ij C_ij^2 - C_(1,1)^2

The analysis records each neuron's best key frequency (argmax of r_k over the key frequencies)
with its r, and its best frequency over all k with that r: the paper's neuron clusters are the
neurons grouped by best key frequency, nearly all with r near 1. A neuron constant over the
inputs (a dead ReLU) has no variance to explain: its r is null. It applies to models with an MLP
trained on modular addition or subtraction (for multiplication the structure lies in the
discrete logarithm, not in the residue).
"""
from __future__ import annotations

import math
from typing import Annotated

import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin.plotting import pyplot, save, seaborn, variant_colour
from plugin.statistics import INTERVAL_NOTE, describe, describe_count
from plugin import Range
from tasks.modular_addition import ModularAddition

ADDITIVE_OPERATIONS = ("add", "sub")
# Below this variance (relative to the layer's largest neuron variance) a neuron counts as constant.
CONSTANT_NEURON = 1e-12


def fourier_basis(p: int) -> tuple[Tensor, Tensor]:
    """The orthonormal Fourier basis of Z_p as rows (p, p), float64, and each row's frequency k:
    the constant, then cos k and sin k for k = 1 .. floor(p/2) (cos only at k = p/2 for even p)."""
    x = torch.arange(p, dtype=torch.float64)
    rows, frequencies = [torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64)], [0]
    for k in range(1, p // 2 + 1):
        angle = 2 * math.pi * k * x / p
        for wave in (torch.cos(angle), torch.sin(angle)):
            if wave.norm() > 1e-9:  # sin at k = p/2 vanishes for even p
                rows.append(wave / wave.norm())
                frequencies.append(k)
    return torch.stack(rows), torch.tensor(frequencies)


def frequency_norms(embedding: Tensor) -> Tensor:
    """n_k for k = 0 .. floor(p/2): the norm of the embedding (p, d) at each frequency of the basis."""
    basis, frequencies = fourier_basis(embedding.shape[0])
    energy = ((basis @ embedding.double()) ** 2).sum(dim=1)
    return torch.zeros(int(frequencies.max()) + 1, dtype=torch.float64).index_add_(0, frequencies, energy).sqrt()


def key_frequencies(norms: Tensor, key_share: float) -> list[int]:
    """The fewest frequencies k >= 1, largest norm first, that carry `key_share` of the energy of
    frequencies k >= 1, in increasing order."""
    energy = norms[1:] ** 2
    order = torch.argsort(energy, descending=True, stable=True)
    cumulative = torch.cumsum(energy[order], 0) / energy.sum()
    count = min(int((cumulative < key_share - 1e-12).sum()) + 1, len(energy))
    return sorted((order[:count] + 1).tolist())


def explained_variance(activations: Tensor) -> Tensor:
    """r_k (neurons, floor(p/2) + 1) for activations (p, p, neurons) on the grid [a, b]: the share of
    each neuron's variance explained by 1, cos/sin of w a and w b and their products at frequency
    k (column 0, the constant alone, explains none). NaN for a neuron without variance."""
    basis, frequencies = fourier_basis(activations.shape[0])
    grid = activations.double().permute(2, 0, 1)
    energy = (basis @ (grid - grid.mean(dim=(1, 2), keepdim=True)) @ basis.T) ** 2  # (neurons, p, p)
    rows_of = F.one_hot(frequencies).double()  # (p, frequencies): which basis row has which frequency
    by_frequency = rows_of.T @ energy @ rows_of  # (neurons, k of a, k of b)
    explained = by_frequency.diagonal(dim1=1, dim2=2) + by_frequency[:, 0, :] + by_frequency[:, :, 0]
    explained[:, 0] = 0
    total = energy.sum(dim=(1, 2))
    constant = total <= CONSTANT_NEURON * total.max()
    return torch.where(constant[:, None], torch.nan, explained / torch.where(constant, 1.0, total)[:, None])


def neuron_activations(run: TrainedRun, inputs: Tensor) -> list[Tensor]:
    """Each MLP layer's neuron activations at the last position (the input of its output
    projection), (len(inputs), width) per layer."""
    captured: list[Tensor] = []
    layers = [block.mlp for block in run.model.blocks if block.mlp is not None]
    hooks = [mlp[-1].register_forward_pre_hook(lambda _, args: captured.append(args[0][:, -1].detach().cpu())) for mlp in layers]
    try:
        run.model(inputs.to(run.device))
    finally:
        for hook in hooks:
            hook.remove()
    return captured


class Fourier(Analysis):
    name = "fourier"
    title = "Fourier analysis (modular addition)"
    report_order = 15

    def __init__(self, *, key_share: Annotated[float, Range(0, 1, low_open=True)] = 0.9) -> None:
        self.key_share = key_share

    def applies(self, run: TrainedRun) -> str | None:
        if not isinstance(run.task, ModularAddition):
            return "the Fourier basis of Z_p applies to the modular arithmetic task alone"
        if run.task.operation not in ADDITIVE_OPERATIONS:
            return f"task.operation={run.task.operation} is periodic in the discrete logarithm, not in the residue"
        if all(block.mlp is None for block in run.model.blocks):
            return "the model has no MLP neurons (model.mlp=false)"
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        unit, non_negative = Range(0, 1), Range(0)
        highest = math.inf if config is None else config.task.p // 2
        return {"frequency": Range(0, highest), "norm": non_negative, "energy_share": unit, "layer": non_negative,
                "neuron": non_negative, "explained": unit, "best_frequency": Range(1, highest), "best_explained": unit}  # fmt: skip

    def measure(self, run: TrainedRun) -> Measurement:
        p = run.task.p
        norms = frequency_norms(run.model.embed.weight[:p].detach().cpu())
        keys = key_frequencies(norms, self.key_share)
        centred = (norms[1:] ** 2).sum()
        rows = [
            {"kind": "embedding", "frequency": k, "norm": norm, "energy_share": None if k == 0 else norm**2 / centred.item(), "key": k in keys}
            for k, norm in enumerate(norms.tolist())
        ]
        for layer, activations in enumerate(neuron_activations(run, run.task.all_pairs().inputs)):
            explained = explained_variance(activations.reshape(p, p, -1))
            at_key = explained[:, keys]
            best_key = at_key.nan_to_num(-1).argmax(dim=1)
            best = explained[:, 1:].nan_to_num(-1).argmax(dim=1) + 1
            for neuron in range(explained.shape[0]):
                constant = bool(explained[neuron, 1].isnan())
                rows.append({
                    "kind": "neuron", "layer": layer, "neuron": neuron,
                    "frequency": None if constant else keys[best_key[neuron]],
                    "explained": None if constant else at_key[neuron, best_key[neuron]].item(),
                    "best_frequency": None if constant else int(best[neuron]),
                    "best_explained": None if constant else explained[neuron, best[neuron]].item(),
                })  # fmt: skip
        return Measurement(rows)

    def section(self, data: SectionData) -> list[Block]:
        rows = data.rows
        embedding, neurons = rows[rows["kind"] == "embedding"], rows[rows["kind"] == "neuron"]
        per_run = run_summary(embedding, neurons)
        per_setting = (
            per_run.groupby(["setting", "task"])
            .agg(key_frequencies=("count", describe_count),
                 energy_share=("energy_share", lambda v: describe(v, bounds=self.bounds("energy_share"))),
                 neuron_r=("mean_r", lambda v: describe(v, bounds=self.bounds("explained"))))
            .reset_index()
        )  # fmt: skip
        examples = data.first_seed_per_group()
        return [
            "The embedding of the residues in the Fourier basis of Z_p: its key frequencies are the fewest that together "
            "carry at least analysis.fourier.key_share (0.9 unless set) of its energy off frequency 0 (the definitions open "
            "analyses/fourier.py). Each MLP neuron's activation at \"=\" over all p² inputs is fitted by "
            "1, cos/sin(wa), cos/sin(wb) and their products at its best key frequency w; r is the fraction of its variance "
            "that fit explains. Per run:",
            per_run.drop(columns=["run"]).round({"energy_share": 3, "mean_r": 3, "median_r": 3, "best_is_key": 3}),
            f"Per setting: the number of key frequencies (median [range over seeds]), and, {INTERVAL_NOTE}, the share of the "
            "energy they carry and the mean r over neurons.",
            per_setting,
            Figure(norm_figure(embedding, examples, data.figure_path("embedding")),
                   "Norm of the embedding at each frequency of Z_p (key frequencies in the variant's colour, the others "
                   "grey; frequency 0 is the embedding's mean), one run per setting (its lowest seed)."),
            Figure(neuron_figure(neurons, examples, data.figure_path("neurons")),
                   "Neuron clusters: each MLP neuron at its best key frequency (x) with the fraction r of its variance "
                   "explained there (y), one run per setting (its lowest seed)."),
        ]  # fmt: skip


def run_summary(embedding: pd.DataFrame, neurons: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its key frequencies, their count and energy share, and its neurons' r."""
    keys = embedding[embedding["key"].astype(bool)]
    summary = keys.groupby(["run", "setting", "task", "seed"]).agg(
        key_frequencies=("frequency", lambda k: ", ".join(str(int(f)) for f in sorted(k))),
        count=("frequency", "size"),
        energy_share=("energy_share", "sum"),
    )
    live = neurons.dropna(subset=["explained"])
    key_pairs = set(zip(keys["run"], keys["frequency"].astype(int)))
    live = live.assign(best_is_key=[(run, int(best)) in key_pairs for run, best in zip(live["run"], live["best_frequency"])])
    neuron_summary = live.groupby("run").agg(
        mean_r=("explained", "mean"), median_r=("explained", "median"), best_is_key=("best_is_key", "mean")
    )
    return summary.join(neuron_summary, on="run").reset_index().sort_values(["setting", "task", "seed"])


def norm_figure(embedding: pd.DataFrame, examples: pd.DataFrame, path):
    plt = pyplot()
    figure, axes = plt.subplots(len(examples), 1, figsize=(8, 1.9 * len(examples) + 0.4), squeeze=False, constrained_layout=True)
    for axis, example in zip(axes[:, 0], examples.itertuples()):
        run = embedding[embedding["run"] == example.run].sort_values("frequency")
        colours = [variant_colour(example.variant) if key else "#bbbbbb" for key in run["key"].astype(bool)]
        axis.bar(run["frequency"], run["norm"], color=colours, width=0.8)
        for row in run[run["key"].astype(bool)].itertuples():
            axis.annotate(str(int(row.frequency)), (row.frequency, row.norm), ha="center", va="bottom", fontsize=7)
        axis.set_title(f"{example.setting} on {example.task} (seed {example.seed})", fontsize=9)
        axis.set_ylabel("norm")
    axes[-1, 0].set_xlabel("frequency k (w = 2πk/p)")
    return save(figure, path)


def neuron_figure(neurons: pd.DataFrame, examples: pd.DataFrame, path):
    plt, sns = pyplot(), seaborn()
    figure, axes = plt.subplots(len(examples), 1, figsize=(8, 1.9 * len(examples) + 0.4), squeeze=False, constrained_layout=True)
    for axis, example in zip(axes[:, 0], examples.itertuples()):
        run = neurons[(neurons["run"] == example.run)].dropna(subset=["explained"])
        order = sorted(run["frequency"].astype(int).unique())
        sns.stripplot(data=run.assign(frequency=run["frequency"].astype(int)), x="frequency", y="explained", order=order,
                      color=variant_colour(example.variant), size=2.5, jitter=0.3, alpha=0.6, ax=axis)  # fmt: skip
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(f"{example.setting} on {example.task} (seed {example.seed}): {len(run)} live neurons", fontsize=9)
        axis.set_xlabel("")
        axis.set_ylabel("r")
    axes[-1, 0].set_xlabel("best key frequency k")
    return save(figure, path)
