"""Where each attention breaks: test accuracy against each difficulty axis a sweep varied (the axes
each task declares, e.g. MQAR's number of key-value pairs and sequence length), one panel per
point of the other axes.

Every point is the mean over seeds of the selected runs: per setting and task, the grid point
chosen on validation, reported on test.
"""
from __future__ import annotations

from analyses import Block, Figure
from bench.report.protocol import model_label, point_labels
from bench.report.sections.base import ReportData, ReportSection
from plugin.plotting import save, seaborn, setting_colours
from plugin.statistics import seed_band


class Difficulty(ReportSection):
    name = "difficulty"
    title = "Where each attention breaks"
    order = 50

    def blocks(self, data: ReportData) -> list[Block]:
        return [figure for task, axes in data.axes.items() for figure in task_figures(data, task, axes)]


def task_figures(data: ReportData, task: str, axes: list[str]) -> list[Block]:
    """One figure per difficulty axis of the task: accuracy along it, a panel per point of the others.
    An axis that never varies with the others held fixed (p and train fraction changed together) has
    no line to draw, and a figure of single points would read as a trend: it is named instead."""
    sns, selection, figure_dir = seaborn(), data.selection, data.figure_dir
    blocks: list[Block] = []
    runs = selection.selected[selection.selected["task"] == task]
    runs = runs.assign(model=model_label(runs, selection, axes))
    colours = setting_colours(runs[["model", "variant"]].itertuples(index=False))
    for axis in axes:
        others = [other for other in axes if other != axis]
        labels = point_labels(runs, others) if others else task
        panel = runs.assign(panel=labels).sort_values(others or axis)
        if panel.groupby("panel")[axis].nunique().max() < 2:
            points = "; ".join(point_labels(runs[axes].drop_duplicates().sort_values(axes), axes))
            held = ", ".join(other.removeprefix("task.") for other in others)
            blocks.append(f"{task}: {axis.removeprefix('task.')} never varies with {held} held fixed (points: {points}), "
                          "so no figure is drawn along it; the summary lists each point.")  # fmt: skip
            continue
        grid = sns.relplot(
            data=panel, x=axis, y="test_accuracy", hue="model", style="model", palette=colours,
            col="panel", col_order=list(panel["panel"].unique()),
            col_wrap=min(4, panel["panel"].nunique()), kind="line", markers=True, errorbar=seed_band, height=3.0, aspect=1.2,
        )  # fmt: skip
        grid.set(ylim=(-0.02, 1.02))
        if panel[axis].max() / max(panel[axis].min(), 1) >= 8:
            grid.set(xscale="log", xticks=sorted(panel[axis].unique()))
            for axes_ in grid.axes.flat:
                axes_.set_xticklabels([str(v) for v in sorted(panel[axis].unique())])
        grid.set_titles("{col_name}")
        grid.set_axis_labels(axis.removeprefix("task."), "test accuracy")
        path = save(grid.figure, figure_dir / f"difficulty_{task}_{axis.removeprefix('task.')}.png")
        blocks.append(Figure(path, f"{task}: test accuracy against {axis.removeprefix('task.')} (line: mean over seeds at the "
                                   "grid point chosen on validation; band: 95% interval), one line per variant."))  # fmt: skip
    return blocks
