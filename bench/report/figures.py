"""The report's own figures (the analyses draw theirs): learning curves, accuracy by slice, speed.
Seaborn on the tidy tables, each setting in its variant's colour (analyses.plotting)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plugin.plotting import REFERENCE_COLOUR, panels_per_row, save, seaborn, setting_colours, settings_relplot, variant_colour
from plugin.statistics import seed_band


def carried_forward(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each run's curve extended to the last step of its setting x task, holding its final value,
    so that a mean over seeds never changes which seeds it averages as early-stopped runs end."""
    extended = []
    for _, group in curves.groupby(["setting", "task"]):
        steps = sorted(group["step"].unique())
        for _, run in group.groupby("run"):
            series = run.set_index("step")[metric].reindex(steps).ffill()
            identity = run.iloc[0][["run", "setting", "variant", "task", "seed"]].to_dict()
            extended.append(pd.DataFrame({"step": steps, metric: series.to_numpy(), **identity}))
    return pd.concat(extended, ignore_index=True) if extended else curves


def learning_curves(curves: pd.DataFrame, metric: str, label: str, path: Path, log_y: bool = False) -> Path:
    data = carried_forward(curves, metric)
    grid = settings_relplot(
        data, "task", panels_per_row(3.2 * 1.3, data["task"].nunique()), x="step", y=metric, errorbar=("pi", 100), markers=True,
        markersize=4, facet_kws={"sharex": False}, height=3.2, aspect=1.3,
    )  # fmt: skip
    grid.set_axis_labels("training step", label)
    grid.set_titles("{col_name}")
    if log_y:
        grid.set(yscale="log")
    grid.figure.suptitle(f"{label} during training (line: mean over seeds, a stopped run holding its last value; band: min–max)", y=1.04)
    return save(grid.figure, path)


MAX_SLICE_POINTS = 10


def grokking_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Train (dashed) and test (solid) accuracy and loss against step on a log axis, one panel per task
    and metric: memorisation shows as train far ahead of test, grokking as test catching up late."""
    sns = seaborn()
    long = []
    for split, style in (("train", "train"), ("test", "test")):
        for metric in ("accuracy", "loss"):
            column = f"{split}_{metric}"
            if column in curves:
                long.append(curves[["run", "setting", "variant", "task", "step", column]].rename(columns={column: "value"}).assign(split=style, metric=metric))
    data = pd.concat(long, ignore_index=True).dropna(subset=["value"])
    data = data[data["step"] > 0].assign(panel=lambda frame: frame["task"] + ": " + frame["metric"])
    panels = sorted(data["panel"].unique(), key=lambda panel: (panel.split(": ")[1], panel))  # accuracy panels first
    settings = data[["setting", "variant"]].drop_duplicates()
    grid = sns.relplot(
        data=data, x="step", y="value", hue="setting", style="split", dashes={"train": (4, 2), "test": ""}, col="panel", col_order=panels,
        col_wrap=panels_per_row(3.0 * 1.4, len(panels)), kind="line", errorbar=("pi", 100),
        palette=setting_colours(settings.itertuples(index=False)), facet_kws={"sharey": False, "sharex": False}, height=3.0, aspect=1.4,
    )  # fmt: skip
    for panel, axis in grid.axes_dict.items():
        axis.set_xscale("log")
        if panel.endswith(": loss"):
            axis.set_yscale("log")
    grid.set_titles("{col_name}")
    grid.set_axis_labels("training step (log)", "")
    return save(grid.figure, path)


def binned_slices(slices: pd.DataFrame) -> pd.DataFrame:
    """Per run, correct / scored at each value of each slice, a slice of more than MAX_SLICE_POINTS
    values in that many equal-width bins (at their centres); slices with one value are dropped."""
    panels = []
    for (task, name), group in slices.groupby(["task", "slice"]):
        values = group["value"]
        if values.nunique() < 2:
            continue
        if values.nunique() > MAX_SLICE_POINTS:
            edges = np.linspace(values.min(), values.max(), MAX_SLICE_POINTS + 1)
            index = np.clip(np.digitize(values, edges[1:-1]), 0, MAX_SLICE_POINTS - 1)
            group = group.assign(value=((edges[:-1] + edges[1:]) / 2)[index])
        panels.append(group)
    if not panels:
        return slices.iloc[:0]
    per_run = pd.concat(panels).groupby(["run", "setting", "variant", "task", "slice", "value"])[["correct", "scored"]].sum().reset_index()
    return per_run.assign(accuracy=per_run["correct"] / per_run["scored"], panel=per_run["task"] + ": by " + per_run["slice"])


def slice_accuracy(per_run: pd.DataFrame, path: Path) -> Path:
    """Test accuracy against each slice's value: one panel per task x slice that the task has."""
    grid = settings_relplot(
        per_run, "panel", min(3, per_run["panel"].nunique()), x="value", y="accuracy", markers=True, errorbar=seed_band,
        facet_kws={"sharex": False}, height=2.8, aspect=1.4,
    )  # fmt: skip
    grid.set_titles("{col_name}")
    grid.set_axis_labels("slice value", "test accuracy")
    grid.set(ylim=(-0.02, 1.02))
    return save(grid.figure, path)


def colours_with_reference(names, reference: str) -> dict[str, str]:
    return {name: REFERENCE_COLOUR if name == reference else variant_colour(name) for name in set(names)}


def speed(timings: pd.DataFrame, reference: str, path: Path) -> Path:
    """Median time against T on log-log axes, one panel per mode, with an O(T^2) guide line; the
    reference in neutral black, dashed."""
    sns = seaborn()
    grid = sns.relplot(
        data=timings, x="T", y="median_ms", hue="variant", col="mode", kind="line", marker="o", style="variant",
        dashes={name: (4, 2) if name == reference else "" for name in timings["variant"].unique()},
        palette=colours_with_reference(timings["variant"], reference), height=3.4, aspect=1.25,
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


def throughput(timings: pd.DataFrame, ceiling: float | None, reference: str, path: Path) -> Path:
    sns = seaborn()
    grid = sns.relplot(
        data=timings, x="T", y="gflops_per_s", hue="variant", col="mode", kind="line", marker="o", style="variant",
        dashes={name: (4, 2) if name == reference else "" for name in timings["variant"].unique()},
        palette=colours_with_reference(timings["variant"], reference), height=3.4, aspect=1.25,
    )  # fmt: skip
    for axis in grid.axes.flat:
        axis.set_xscale("log", base=2)
        if ceiling:
            axis.axhline(ceiling, color="grey", linestyle=":", label="matmul ceiling")
    grid.set_axis_labels("sequence length T (tokens)", "GFLOP/s")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Achieved GFLOP/s (dotted: this machine's float32 matmul)", y=1.03)
    return save(grid.figure, path)
