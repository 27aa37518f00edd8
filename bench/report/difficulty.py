"""Where each attention breaks: test accuracy against each difficulty axis a sweep varied (the axes
each task declares, e.g. MQAR's number of key-value pairs and sequence length), and the protocol
score of an experiment that defines one (MAD: the mean over difficulty settings of the selected
test accuracy).

Every point is the mean over seeds of the selected runs: per setting and task, the grid point
(learning rate, and weight decay for MAD) chosen on validation, reported on test.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from analyses import Block, Figure
from analyses.plotting import save, variant_colour
from analyses.statistics import INTERVAL_NOTE, describe, seed_band
from bench.report.tables import Selection, setting_labels
from tasks import TASKS


def difficulty_columns(selection: Selection) -> dict[str, list[str]]:
    """Per task, the swept config columns that are its declared difficulty axes."""
    axes = {}
    for task, runs in selection.selected.groupby("task"):
        name = runs["task_name"].iloc[0]
        declared = TASKS[name].difficulty_axes if name in TASKS else ()
        swept = [f"task.{axis}" for axis in declared if f"task.{axis}" in selection.settings and runs[f"task.{axis}"].nunique() > 1]
        if swept:
            axes[task] = swept
    return axes


def swept_axes(selection: Selection) -> list[str]:
    """Every column that is a swept difficulty axis of some task."""
    return sorted({column for columns in difficulty_columns(selection).values() for column in columns})


def point_labels(runs: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Where on these axes each run sits: 'seq_len=64 num_kv_pairs=16'; empty for no axes."""
    return setting_labels(runs.assign(no_base=""), axes, base="no_base", strip="task.").str.strip()


def model_label(runs: pd.DataFrame, selection: Selection, difficulty: list[str]) -> pd.Series:
    """The setting without its difficulty axes: the variant plus whatever else the sweep varied."""
    return setting_labels(runs, [column for column in selection.settings if column not in difficulty])


def with_difficulty_point(selection: Selection) -> pd.DataFrame:
    """The selected runs with `model` (the setting without its task's difficulty axes) and `point`
    (where on those axes a run sits, e.g. 'seq_len=64 num_kv_pairs=16'; empty where a sweep varied
    none), so that variants are compared only at the same point."""
    axes = difficulty_columns(selection)
    parts = [
        runs.assign(model=model_label(runs, selection, axes.get(task, [])), point=point_labels(runs, axes.get(task, [])))
        for task, runs in selection.selected.groupby("task")
    ]  # fmt: skip
    return pd.concat(parts) if parts else selection.selected.assign(model=None, point=None)


def difficulty_blocks(selection: Selection, figure_dir: Path) -> list[Block]:
    blocks: list[Block] = []
    for task, axes in difficulty_columns(selection).items():
        runs = selection.selected[selection.selected["task"] == task]
        runs = runs.assign(model=model_label(runs, selection, axes))
        colours = {model: variant_colour(variant) for model, variant in runs[["model", "variant"]].drop_duplicates().itertuples(index=False)}
        for axis in axes:
            others = [other for other in axes if other != axis]
            labels = point_labels(runs, others) if others else task
            panel = runs.assign(panel=labels).sort_values(others or axis)
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


def mad_leaderboard(selection: Selection) -> list[Block]:
    """The MAD score per variant: for each seed, the mean over every task x difficulty setting of the
    selected test accuracy; then the mean and 95% interval over seeds."""
    runs = selection.selected[selection.selected["trained"].ne(False) & selection.selected["control"].ne(True)]
    if runs.empty:
        return []
    runs = runs.assign(model=model_label(runs, selection, swept_axes(selection)))
    runs = runs.assign(task_setting=runs["task"] + " " + runs["setting"])
    per_seed = runs.groupby(["model", "seed"]).agg(score=("test_accuracy", "mean"), settings=("task_setting", "nunique"), tasks=("task", "nunique"))
    board = (
        per_seed.reset_index()
        .groupby("model")
        .agg(mad_score=("score", describe), mean=("score", "mean"), settings=("settings", "max"), tasks=("tasks", "max"))
        .sort_values("mean", ascending=False)
        .drop(columns="mean")
        .reset_index()
    )
    board.insert(0, "rank", range(1, len(board) + 1))
    return [
        "MAD score (Poli et al. 2024): per seed, the mean over every task and difficulty setting of the test accuracy at the "
        f"grid point chosen on validation; {INTERVAL_NOTE}. Settings and tasks: how many the score averages over.",
        board,
    ]
