"""The seed's "loud mismatch" analysis (seed 001), from the triple variant's own scoring function.

A query plane q = e1, r = e2 in 4 dimensions. The true match is the unit key (q + r) / sqrt 2,
inside the plane; a loud mismatch is a key of magnitude m orthogonal to the plane, plus a leak
0.1 q. The dot product scores every loud key q . k = 0.1 whatever m, while the Gram score

    -det Gram(q, k, r) = -|q|^2 |r_perp|^2 |k_perp|^2 = -m^2

falls with m: a loud key off the plane is pushed away, not attracted. Scores are unscaled, as in
the seed. It applies to runs of the triple variant; the table is the same for every such run.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from omegaconf import DictConfig

import variants.triple as triple
from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin import Range
from plugin.plotting import pyplot, save, seaborn

MAGNITUDES = (1.0, 5.0, 10.0, 50.0, 100.0)  # the seed's
LEAK = 0.1  # the part of q in every loud key, as in the seed


def loud_mismatch_table(magnitudes: tuple[float, ...] = MAGNITUDES) -> pd.DataFrame:
    """One row per key: `key` (true match / loud mismatch), `magnitude` (the seed's Mag(K): 1 for
    the match, the orthogonal part's length m otherwise), `dot_product` q . k, `gram_score`
    -det Gram(q, k, r), unscaled as in the seed."""
    basis = torch.eye(4, dtype=torch.float64)
    q, r, off_plane = basis[0], basis[1], basis[2]
    keys = torch.stack([(q + r) / math.sqrt(2), *(m * off_plane + LEAK * q for m in magnitudes)])
    gram = triple.gram_scores(q[None], keys, r[None])[0]
    return pd.DataFrame(
        {
            "key": ["true match"] + ["loud mismatch"] * len(magnitudes),
            "magnitude": [1.0, *magnitudes],
            "dot_product": (keys @ q).tolist(),
            "gram_score": gram.tolist(),
        }
    )


class LoudMismatch(Analysis):
    name = "loud_mismatch"
    title = "Triple-product: loud mismatches"
    report_order = 80

    def applies(self, run: TrainedRun) -> str | None:
        if not any(isinstance(layer, triple.TripleProductAttention) for layer in run.attention_layers):
            return "only the triple variant scores keys by a Gram determinant"
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        """-det Gram = -|q|^2 |r_perp|^2 |k_perp|^2 is never positive; q . k is LEAK for every loud key and 1/sqrt 2
        for the match."""
        return {"magnitude": Range(0, low_open=True), "dot_product": Range(LEAK, 1 / math.sqrt(2)), "gram_score": Range(high=0)}

    def measure(self, run: TrainedRun) -> Measurement:
        return Measurement(loud_mismatch_table().to_dict("records"))

    def section(self, data: SectionData) -> list[Block]:
        table = data.rows[data.rows["run"] == data.rows["run"].iloc[0]][["key", "magnitude", "dot_product", "gram_score"]]
        return [
            "The seed's analysis, from the triple variant's own scoring function: query plane q = e1, r = e2; the true "
            "match (q + r)/√2 lies in the plane; a loud mismatch is a key of magnitude m orthogonal to it plus 0.1 q. "
            "Scores unscaled, as in the seed.",
            table.reset_index(drop=True),
            Figure(plot(table, data.figure_path("scores")), "Scores against the mismatched key's magnitude (dotted: the true match)."),
        ]


def plot(table: pd.DataFrame, path):
    """Dot-product and Gram scores of loud keys against their magnitude, the true match dotted."""
    plt, sns = pyplot(), seaborn()
    loud = table[table["key"] == "loud mismatch"].melt(
        id_vars="magnitude", value_vars=["dot_product", "gram_score"], var_name="score", value_name="value"
    )
    match = table[table["key"] == "true match"].iloc[0]
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    sns.lineplot(data=loud, x="magnitude", y="value", hue="score", marker="o", ax=axis)
    for column, colour in (("dot_product", sns.color_palette()[0]), ("gram_score", sns.color_palette()[1])):
        axis.axhline(match[column], color=colour, linestyle=":", linewidth=1)
    axis.set_xscale("log")
    axis.set_yscale("symlog", linthresh=0.1)
    axis.set_xlabel("magnitude of the mismatched key (log)")
    axis.set_ylabel("score (symlog)")
    axis.set_title("Loud mismatches: the dot product stays at 0.1, the Gram score falls as −m²", fontsize=9)
    return save(figure, path)
