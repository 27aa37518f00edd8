"""What every figure shares, for the analyses and the report alike: the plotting libraries, loaded
and themed on first use; one colour per variant fixed by its name; saving.

Nothing is imported at import time: matplotlib and seaborn load (files only, the Agg backend) when
the first figure is drawn, so a command that draws none (``--help``, a job) never pays for them.

A variant's colour comes from a hash of its name alone, so it is the same in every figure of every
report, and adding a variant (shipped or a user's) never moves another's and needs no edit here.
References that are not variants (raw SDPA in the speed section) are drawn in neutral black.
"""
from __future__ import annotations

import colorsys
import hashlib
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from plugin.statistics import seed_band

REFERENCE_COLOUR = "#000000"
LIGHTNESS = (0.35, 0.5, 0.65)
# Prefixed to every name before hashing. Chosen once, by a search over 3,000 prefixes, as the one that
# sets the 13 variants first shipped furthest apart (every pair at least 0.30 apart in RGB); any
# other name's colour is as good as its hash, and the figures' line styles tell close ones apart.
SALT = "492:"


@cache
def pyplot() -> ModuleType:
    """matplotlib.pyplot, on the file-only Agg backend, with the report's seaborn theme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt


def seaborn() -> ModuleType:
    """seaborn, with pyplot set up as pyplot() does."""
    pyplot()
    import seaborn as sns

    return sns


def variant_colour(name: str) -> str:
    """The colour of variant `name` in every figure: hue and lightness from a hash of the name."""
    digest = hashlib.sha256((SALT + name).encode()).digest()
    hue, lightness = int.from_bytes(digest[:2], "big") / 65536, LIGHTNESS[digest[2] % len(LIGHTNESS)]
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.8)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def setting_colours(pairs) -> dict[str, str]:
    """Colours for labelled settings, from (label, variant) pairs: a variant's only setting in its
    variant's colour; several settings of one variant (two learning rates, a step budget) in shades of
    it from dark to light, in the labels' order, so that no two settings of a figure share a colour."""
    by_variant: dict[str, list[str]] = {}
    for label, variant in sorted(set(pairs)):
        by_variant.setdefault(variant, []).append(label)
    colours = {}
    for variant, labels in by_variant.items():
        if len(labels) == 1:
            colours[labels[0]] = variant_colour(variant)
            continue
        hue, _, saturation = colorsys.rgb_to_hls(*(int(variant_colour(variant)[i : i + 2], 16) / 255 for i in (1, 3, 5)))
        for index, label in enumerate(labels):
            red, green, blue = colorsys.hls_to_rgb(hue, 0.25 + 0.5 * index / (len(labels) - 1), saturation)
            colours[label] = f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
    return colours


def palette(names) -> dict[str, str]:
    """Colours for the variant names of a figure's hue column."""
    return {name: variant_colour(name) for name in set(names)}


DPI = 110
# Wider than this, a figure no longer reads on a laptop screen: figures wrap their panels into rows
# to stay below it, and one that still does not is saved at a lower resolution to fit.
MAX_WIDTH_PIXELS = 2400


def save(figure: Any, path: Path) -> Path:
    """Save a figure as a PNG of at most MAX_WIDTH_PIXELS wide, in 256 colours (a third of the bytes
    of full colour for these plots, which hold few colours), and close it."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    pyplot().close(figure)
    with Image.open(path) as image:
        picture = image.convert("RGB")
    if picture.width > MAX_WIDTH_PIXELS:
        picture = picture.resize((MAX_WIDTH_PIXELS, round(picture.height * MAX_WIDTH_PIXELS / picture.width)), Image.Resampling.LANCZOS)
    picture.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path)
    return path


def by_setting(frame) -> dict:
    """Seaborn keyword arguments for one line per setting: coloured by its variant, and with its own
    markers and dashes, so that a setting whose line lies on another's still shows."""
    settings = frame[["setting", "variant"]].drop_duplicates().sort_values("setting")
    order = list(settings["setting"])
    colours = setting_colours(settings.itertuples(index=False))
    return {"hue": "setting", "hue_order": order, "palette": colours, "style": "setting", "style_order": order}


# Past this many settings in one figure, and panels that each show only some of them, a shared legend
# lists dozens of lines beside a few small panels: each panel gets its own legend instead.
MAX_SHARED_LEGEND = 8


def settings_relplot(frame, facet: str, col_wrap: int, **relplot: Any) -> Any:
    """seaborn.relplot of lines by setting (by_setting), one panel per `facet` value, col_wrap panels a
    row. Where the settings are more than MAX_SHARED_LEGEND and no panel shows them all (an experiment
    of many tasks and difficulty points), each panel gets a legend beside it naming only its own
    settings without the config groups' prefixes, one panel a row, instead of one legend of them all."""
    per_panel = frame["setting"].nunique() > MAX_SHARED_LEGEND and frame.groupby(facet)["setting"].nunique().max() < frame["setting"].nunique()
    grid = seaborn().relplot(data=frame, col=facet, col_wrap=1 if per_panel else col_wrap, kind="line", **by_setting(frame), **relplot)
    if per_panel:
        handles = dict(zip((text.get_text() for text in grid.legend.texts), grid.legend.legend_handles))
        grid.legend.remove()
        for value, axis in grid.axes_dict.items():
            own = sorted(frame.loc[frame[facet] == value, "setting"].unique())
            axis.legend([handles[setting] for setting in own], [short_label(setting) for setting in own], loc="upper left",
                        bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)  # fmt: skip
    return grid


def panels_per_row(panel_width_inches: float, panels: int) -> int:
    """How many panels of this width a figure row holds within MAX_WIDTH_PIXELS: for col_wrap, and
    for figures that lay out their own panels."""
    return max(1, min(panels, int(MAX_WIDTH_PIXELS / DPI // panel_width_inches)))


def bars_with_points(frame, value: str, col: str, row: str, value_label: str, path: Path,
                     value_lim: tuple[float, float] | None = (0, 1.02)) -> Path:
    """One panel per row x col value: a horizontal bar per setting at the mean over seeds (with its
    95% interval) and a black dot per seed, so that a mean never hides its spread. Settings are read
    down the side, horizontally, each panel listing only its own (an experiment of many difficulty
    points and tasks has long labels and panels that share few); panels wrap into rows. value_label
    and value_lim name and bound the bars' axis."""
    plt, sns = pyplot(), seaborn()
    panels = [(row_value, col_value) for row_value in sorted(frame[row].unique()) for col_value in sorted(frame[col].unique())
              if ((frame[row] == row_value) & (frame[col] == col_value)).any()]  # fmt: skip
    colours = setting_colours(frame[["setting", "variant"]].itertuples(index=False))
    labels = {setting: short_label(setting) for setting in colours}
    most = max(frame[(frame[row] == r) & (frame[col] == c)]["setting"].nunique() for r, c in panels)
    width = 3.6 + LABEL_INCHES_PER_CHARACTER * max(len(label) for label in labels.values())
    across = panels_per_row(width, len(panels))
    down = -(-len(panels) // across)
    figure, axes = plt.subplots(down, across, figsize=(width * across, (0.9 + 0.3 * most) * down), squeeze=False, constrained_layout=True)
    for index, axis in enumerate(axes.flat):
        if index >= len(panels):
            axis.set_visible(False)
            continue
        row_value, col_value = panels[index]
        subset = frame[(frame[row] == row_value) & (frame[col] == col_value)]
        order = sorted(subset["setting"].unique())
        sns.barplot(data=subset, y="setting", x=value, hue="setting", order=order, hue_order=order, palette=colours, orient="h",
                    errorbar=seed_band, alpha=0.7, legend=False, ax=axis)  # fmt: skip
        sns.stripplot(data=subset, y="setting", x=value, order=order, color="black", size=4, jitter=0.15, orient="h", ax=axis)
        axis.set_title(f"{row_value}: {col_value}", fontsize=10)
        axis.set_yticks(range(len(order)), [labels[setting] for setting in order], fontsize=8)
        axis.set_ylabel("")
        axis.set_xlabel(value_label, fontsize=9)
        if value_lim is not None:
            axis.set_xlim(*value_lim)
    return save(figure, path)


# Room for a setting's label beside the bars (8-point text), per character.
LABEL_INCHES_PER_CHARACTER = 0.065


def short_label(setting: str) -> str:
    """A setting's label without the config groups' prefixes ('task.seq_len=64' -> 'seq_len=64'): the
    key names alone say which option it is."""
    return " ".join(part.split(".", 1)[-1] if "=" in part else part for part in setting.split())
