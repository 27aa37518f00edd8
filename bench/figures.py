"""The report's figures: seaborn on the tidy tables, one colour per variant in every figure."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from variants import VARIANTS  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def variant_palette(names: list[str]) -> dict[str, tuple]:
    """The same colour for a variant in every figure of every report: registered variants in
    name order take the palette's colours in turn."""
    ordered = sorted(set(VARIANTS) | set(names))
    return dict(zip(ordered, sns.color_palette("colorblind", len(ordered))))


def save(figure: plt.Figure, path: Path) -> Path:
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def learning_curves(curves: pd.DataFrame, metric: str, label: str, path: Path, log_y: bool = False) -> Path:
    grid = sns.relplot(
        data=curves, x="step", y=metric, hue="variant", col="task", kind="line", errorbar=("pi", 100), marker="o", markersize=4,
        palette=variant_palette(list(curves["variant"].unique())), facet_kws={"sharex": False}, height=3.2, aspect=1.3,
    )  # fmt: skip
    grid.set_axis_labels("training step", label)
    grid.set_titles("{col_name}")
    if log_y:
        grid.set(yscale="log")
    grid.figure.suptitle(f"{label} during training (line: mean over seeds; band: min–max)", y=1.04)
    return save(grid.figure, path)


def length_generalisation(lengths: pd.DataFrame, chance: dict[str, float], path: Path) -> Path:
    grid = sns.relplot(
        data=lengths, x="length", y="accuracy", hue="variant", col="task", kind="line", marker="o",
        errorbar=("pi", 100), palette=variant_palette(list(lengths["variant"].unique())),
        facet_kws={"sharex": False}, height=3.2, aspect=1.3,
    )  # fmt: skip
    for task, axis in grid.axes_dict.items():
        axis.set_xscale("log", base=2)
        axis.axhline(chance[task], color="grey", linestyle=":", label="chance")
        axis.set_ylim(-0.02, 1.02)
    grid.set_axis_labels("sequence length (tokens, log2)", "eval accuracy")
    grid.set_titles("{col_name}: trained at the shortest length")
    return save(grid.figure, path)


def attention_heads(attention_file: Path, title: str, path: Path) -> Path:
    """One example's attention: a panel per head, query rows and key columns, labelled L{l}H{h}."""
    weights = torch.load(attention_file, weights_only=True)["weights"]
    n_layers, n_heads = weights.shape[:2]
    figure, axes = plt.subplots(n_layers, n_heads, figsize=(2.2 * n_heads, 2.2 * n_layers), squeeze=False)
    for layer in range(n_layers):
        for head in range(n_heads):
            axis = axes[layer][head]
            axis.imshow(weights[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            axis.set_title(f"L{layer}H{head}", fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
    axes[-1][0].set_xlabel("key position")
    axes[-1][0].set_ylabel("query position")
    figure.suptitle(title, fontsize=10)
    return save(figure, path)


def head_scores(heads: pd.DataFrame, path: Path) -> Path:
    long = heads.melt(id_vars=["variant", "task", "head"], value_vars=["previous_token", "duplicate_token", "induction"],
                      var_name="score", value_name="value")  # fmt: skip
    grid = sns.catplot(
        data=long, x="head", y="value", hue="variant", col="score", row="task", kind="bar", errorbar=("pi", 100),
        palette=variant_palette(list(long["variant"].unique())), height=2.6, aspect=1.5, sharex=False,
    )  # fmt: skip
    grid.set_axis_labels("head", "attention score (0–1)")
    grid.set_titles("{row_name}: {col_name}")
    grid.set(ylim=(0, 1))
    for axis in grid.axes.flat:
        axis.tick_params(axis="x", rotation=90)
    return save(grid.figure, path)


def chance_level(vocab_size: float) -> float:
    return 1 / vocab_size if vocab_size and not math.isnan(vocab_size) else 0.0


def speed(timings: pd.DataFrame, path: Path) -> Path:
    """Median time against T on log-log axes, one panel per mode, with an O(T^2) guide line."""
    grid = sns.relplot(
        data=timings, x="T", y="median_ms", hue="variant", col="mode", kind="line", marker="o",
        palette=variant_palette(list(timings["variant"].unique())), height=3.2, aspect=1.2,
    )  # fmt: skip
    for mode, axis in grid.axes_dict.items():
        rows = timings[timings["mode"] == mode]
        lengths = sorted(rows["T"].unique())
        if len(lengths) > 1:
            anchor = rows[rows["T"] == lengths[-1]]["median_ms"].max()
            axis.plot(lengths, [anchor * (t / lengths[-1]) ** 2 for t in lengths], color="grey", linestyle=":", label="O(T²)")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
    grid.set_axis_labels("sequence length T (tokens)", "median time (ms)")
    grid.set_titles("{col_name}")
    return save(grid.figure, path)


def throughput(timings: pd.DataFrame, ceiling: float | None, path: Path) -> Path:
    grid = sns.relplot(
        data=timings, x="T", y="gflops_per_s", hue="variant", col="mode", kind="line", marker="o",
        palette=variant_palette(list(timings["variant"].unique())), height=3.2, aspect=1.2,
    )  # fmt: skip
    for axis in grid.axes.flat:
        axis.set_xscale("log", base=2)
        if ceiling:
            axis.axhline(ceiling, color="grey", linestyle=":", label="matmul ceiling")
    grid.set_axis_labels("sequence length T (tokens)", "GFLOP/s")
    grid.set_titles("{col_name}: achieved GFLOP/s (dotted: this machine's float32 matmul)")
    return save(grid.figure, path)


def loud_mismatch(table: pd.DataFrame, path: Path) -> Path:
    """Dot-product and Gram scores of loud mismatched keys against their magnitude, with the true
    match's scores as reference lines."""
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
