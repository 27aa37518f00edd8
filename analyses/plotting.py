"""What every figure shares: the theme, one colour per variant fixed by its name, and saving.

A variant's colour depends on its name alone, so it is the same in every figure of every report,
and adding a variant never moves another's: the shipped variants have colours picked to be told
apart (the colorblind palette first), any other name gets a hue derived from a hash of the name.
References that are not variants (raw SDPA in the speed section) are drawn in neutral black.
"""
from __future__ import annotations

import colorsys
import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from analyses.statistics import seed_band  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")

SHIPPED_COLOURS = {
    "standard": "#0173b2",
    "triple": "#de8f05",
    "handcoded_induction": "#029e73",
    "handcoded_q_induction": "#12711c",
    "alibi": "#d55e00",
    "nope": "#cc78bc",
    "qk_norm": "#ca9161",
    "sigmoid": "#56b4e9",
    "differential": "#ece133",
    "linear": "#949494",
    "sliding_window": "#001c7f",
    "simplicial": "#8c0800",
    "positional": "#a23582",
}
REFERENCE_COLOUR = "#000000"


def variant_colour(name: str) -> str:
    """The colour of variant `name` in every figure."""
    if name in SHIPPED_COLOURS:
        return SHIPPED_COLOURS[name]
    digest = hashlib.sha256(name.encode()).digest()
    hue, lightness = digest[0] / 256, (0.38, 0.5, 0.62)[digest[1] % 3]
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.75)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def palette(names) -> dict[str, str]:
    """Colours for the variant names of a figure's hue column."""
    return {name: variant_colour(name) for name in set(names)}


def save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def by_setting(frame) -> dict:
    """Seaborn keyword arguments for one line per setting: coloured by its variant, and with its own
    markers and dashes, so that a setting whose line lies on another's still shows."""
    settings = frame[["setting", "variant"]].drop_duplicates().sort_values("setting")
    order = list(settings["setting"])
    colours = {row.setting: variant_colour(row.variant) for row in settings.itertuples()}
    return {"hue": "setting", "hue_order": order, "palette": colours, "style": "setting", "style_order": order}


def bars_with_points(frame, value: str, col: str, row: str, ylabel: str, path: Path, ylim: tuple[float, float] | None = (0, 1.02)) -> Path:
    """One panel per row x col value: a bar per setting at the mean over seeds (with its 95%
    interval) and a black dot per seed, so that a mean never hides its spread."""
    columns, rows = sorted(frame[col].unique()), sorted(frame[row].unique())
    order = sorted(frame["setting"].unique())
    colours = {setting: variant_colour(variant) for setting, variant in frame[["setting", "variant"]].drop_duplicates().itertuples(index=False)}
    width = max(3.2, 0.55 * len(order) + 1.2)
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(width * len(columns), 3.2 * len(rows)), squeeze=False, constrained_layout=True)
    for i, row_value in enumerate(rows):
        for j, col_value in enumerate(columns):
            axis = axes[i][j]
            subset = frame[(frame[row] == row_value) & (frame[col] == col_value)]
            if subset.empty:
                axis.set_visible(False)
                continue
            sns.barplot(data=subset, x="setting", y=value, hue="setting", order=order, hue_order=order, palette=colours,
                        errorbar=seed_band, alpha=0.7, legend=False, ax=axis)  # fmt: skip
            sns.stripplot(data=subset, x="setting", y=value, order=order, color="black", size=4, jitter=0.15, ax=axis)
            axis.set_title(f"{row_value}: {col_value}", fontsize=10)
            axis.set_xlabel("")
            axis.set_ylabel(ylabel if j == 0 else "")
            axis.tick_params(axis="x", rotation=40, labelsize=8)
            for label in axis.get_xticklabels():
                label.set_horizontalalignment("right")
            if ylim is not None:
                axis.set_ylim(*ylim)
    return save(figure, path)
