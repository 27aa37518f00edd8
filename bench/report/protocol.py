"""The measurement protocol: which runs every table and figure of a report rests on, and the
statistics its verdicts use. Every report section takes its runs and its rules from here.

Selection, in order (rows come one per config from bench.report.records):
1. Runs are grouped by the report protocol they were run under (``protocol.select_on``,
   ``protocol.score``, recorded with each run), so that sweeps merged into one report keep each
   its own protocol.
2. A setting is a variant plus every config value that differs between runs of the same variant
   and task, other than the seed and the selection keys. A categorical task option that a sweep
   varies (copy's variable_length) makes another task, not a setting.
3. Over the selection grid (the ``protocol.select_on`` keys, the learning rate by default; MAD's
   experiment adds weight decay), each setting x task keeps the grid point with the best mean
   final *validation* accuracy over its tuning seeds, those it ran at every grid point (the tuning
   sweeper runs the grid on one seed and the other seeds at the chosen point only); a diverged
   seed counts as 0 there, a failed one (an error, not a result) is left out. Ties go to the lower
   validation loss, and exact ties to the point run on more seeds (the one a sweep confirmed),
   then to the point nearest the grid's middle. Where a sweep confirmed more than one point on
   its other seeds (the tuning sweeper's second look, after the seeds disagreed at its first
   choice), the choice is among those points, by their mean over all of their seeds. The tuning
   sweeper (hydra_plugins/bench_sweeper) chooses by this same rule.
4. The selected runs are the completed runs at that point. Every section reports their *test*
   numbers; the others are counted and listed, never averaged in.

Roles (model, constructed, control), where a model "breaks" along a difficulty axis, and the MAD
score; the verdicts and their statistical rule are bench.report.verdicts and plugin.statistics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.core.config import RUN_CONTROL_KEYS
from plugin.statistics import describe
from tasks import TASKS

# Config columns that place a run in a sweep, or steer how it ran, rather than settings to compare.
NOT_SETTINGS = {"seed", "variant.name", "task.name", "protocol.select_on", "protocol.score", *RUN_CONTROL_KEYS}
PROTOCOL_COLUMNS = ["protocol.select_on", "protocol.score"]
IDENTITY = ["run", "variant", "task", "seed", "setting"]
# The fewest values of a selection key that count as a tuned grid (the tuning sweeper's minimum):
# with fewer, a value cannot be shown to be an optimum, and a negative verdict says "untuned".
MIN_GRID = 4
# Along a difficulty axis, a model "breaks" where its mean test accuracy falls below this.
BREAK = 0.9


def swept_settings(runs: pd.DataFrame, select_on: tuple[str, ...] = ("train.lr",)) -> list[str]:
    """Config columns other than the selection grid with more than one value among the runs of some
    variant x task (NaN, the mark of an option another variant lacks, is not a value)."""
    config_columns = [c for c in runs.columns if "." in c and c not in NOT_SETTINGS and c not in select_on]
    by_group = runs.groupby(["variant", "task"])
    return [c for c in config_columns if (by_group[c].nunique(dropna=True) > 1).any()]


def is_difficulty_axis(runs: pd.DataFrame, column: str) -> bool:
    """Whether a task option is a ladder: numeric, or a declared difficulty axis of every task that
    has it. A categorical option that a sweep varies (copy's variable_length, an operation) makes a
    different task, not a setting."""
    present = runs[runs[column].notna()]
    if not present[column].map(lambda value: isinstance(value, (bool, str))).any():
        return True
    return all(name in TASKS and column.removeprefix("task.") in TASKS[name].difficulty_axes for name in present["task"].unique())


def setting_labels(runs: pd.DataFrame, settings: list[str], base: str = "variant", strip: str = "") -> pd.Series:
    """'standard', or 'standard model.d_model=128' where a sweep varied more than variant and seed
    (base names the column labelled; strip, a prefix dropped from the setting's names)."""
    labels = runs[base].astype(str)
    for column in settings:
        present = runs[column].notna()
        labels = labels.where(~present, labels + f" {column.removeprefix(strip)}=" + runs[column].map(option_text))
    return labels


def option_text(value: object) -> str:
    """A config value as it was written: 4, not the 4.0 that pandas makes of an integer column with gaps."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@dataclass
class Selection:
    selected: pd.DataFrame  # completed runs at the chosen grid point: behind every table
    runs: pd.DataFrame  # every run, with its setting label
    grid: pd.DataFrame  # setting x task x grid point: mean validation accuracy, seeds, diverged, chosen
    select_on: list[str]  # the grid's keys
    settings: list[str]


def select_under_one_protocol(runs: pd.DataFrame, select_on: tuple[str, ...]) -> Selection:
    """Steps 2 to 4 of this module's docstring, for runs of one protocol."""
    runs = runs[runs["variant"].notna() & runs["task"].notna()].copy()
    select_on = [key for key in select_on if key in runs]
    settings = swept_settings(runs, tuple(select_on))
    task_options = [column for column in settings if column.startswith("task.") and not is_difficulty_axis(runs, column)]
    runs["task_name"] = runs["task"]
    runs["task"] = setting_labels(runs, task_options, base="task", strip="task.")  # e.g. "copy variable_length=True"
    settings = [column for column in settings if column not in task_options]
    runs["setting"] = setting_labels(runs, settings)
    keys = ["setting", "task", *select_on]
    grid = tuning_grid(runs, ["setting", "task"], select_on)
    chosen = grid[grid["chosen"]][keys]
    completed = runs[runs["status"] == "completed"]
    selected = completed.merge(chosen, on=keys) if len(chosen) else completed.iloc[:0]
    return Selection(selected.sort_values(["setting", "task", "seed"]).reset_index(drop=True), runs, grid.reset_index(drop=True), select_on, settings)


def tuning_grid(runs: pd.DataFrame, group: list[str], keys: list[str]) -> pd.DataFrame:
    """Per group (setting x task) and grid point (values of `keys`): the mean final validation
    accuracy and loss over the group's tuning seeds (those it ran at every one of its points; every
    seed where none ran them all), the seeds at the point, how many diverged, which point is chosen
    (step 3 of this module's docstring), and `edge`: the keys on whose tried range's edge the chosen
    point sits (for a key tried at three values or more), so that an unbracketed optimum is named."""
    parts = []
    for _, group_all in runs.groupby(group, dropna=False):
        point_keys = keys or ["_point"]
        group_all = group_all.assign(_point=0) if not keys else group_all
        # Who ran where, failed jobs included: the tuning seeds ran at every point (every seed where none
        # did); a point where another seed ran was confirmed.
        ran_at = group_all.groupby(point_keys, dropna=False)["seed"].agg(set)
        tuning_seeds = set.intersection(*ran_at) or set(group_all["seed"])
        confirmed = ran_at.map(lambda seeds: bool(seeds - tuning_seeds)).rename("_confirmed").reset_index()
        group_runs = group_all[group_all["status"].isin(["completed", "diverged"])].assign(
            _validation=lambda t: t["validation_accuracy"].where(t["status"] == "completed", 0.0),
            _loss=lambda t: t["validation_loss"].where(t["status"] == "completed", math.inf),
        )
        if group_runs.empty:
            continue
        tuning = group_runs[group_runs["seed"].isin(tuning_seeds)]
        points = (
            tuning.groupby(group + point_keys, dropna=False)
            .agg(validation_accuracy=("_validation", "mean"), validation_loss=("_loss", "mean"), tuning_seeds=("seed", "count"))
            .reset_index()
            .merge(group_runs.groupby(group + point_keys, dropna=False)
                   .agg(seeds=("seed", "count"), diverged=("status", lambda s: int((s == "diverged").sum())),
                        _all_accuracy=("_validation", "mean"), _all_loss=("_loss", "mean")).reset_index(), on=group + point_keys)
            .merge(confirmed, on=point_keys)
        )  # fmt: skip
        # A second look (the tuning sweeper's step 4) confirmed more than one point on further seeds: those
        # points are compared on all of their seeds, the others no longer chosen.
        if points["_confirmed"].sum() > 1:
            points = points.assign(_accuracy=points["_all_accuracy"].where(points["_confirmed"]).fillna(-math.inf),
                                   _rank_loss=points["_all_loss"].where(points["_confirmed"]).fillna(math.inf))  # fmt: skip
        else:
            points = points.assign(_accuracy=points["validation_accuracy"].fillna(-math.inf), _rank_loss=points["validation_loss"].fillna(math.inf))
        points = points.sort_values(["_accuracy", "_rank_loss"], ascending=[False, True])
        # Points tied with the best (an untrained reference, or a rate that does not matter) choose the
        # one nearest the grid's middle: a tie on an edge is not an optimum past it.
        best = points.iloc[0]
        tied = points[(points["_accuracy"] == best["_accuracy"]) & (points["_rank_loss"] == best["_rank_loss"])]
        tied = tied[tied["seeds"] == tied["seeds"].max()]  # the point the sweep confirmed on its other seeds, if one is tied
        off_centre = sum(abs(points[key].rank(method="dense")[tied.index] - (points[key].nunique() + 1) / 2) for key in keys) if keys else 0
        best_index = tied.index[pd.Series(off_centre, index=tied.index).argmin()] if keys else tied.index[0]
        points["chosen"] = points.index == best_index
        best = points.loc[best_index]
        points["edge"] = ",".join(key for key in keys if points[key].nunique() >= 3 and best[key] in (points[key].min(), points[key].max()))
        points.loc[~points["chosen"], "edge"] = ""
        # fewer than MIN_GRID values of a key (or no grid at all): the rate was set, not tuned
        points["untuned"] = ",".join(key for key in keys if points[key].nunique() < MIN_GRID) if keys else "no grid"
        points["all_seeds_validation_accuracy"] = points["_all_accuracy"].where(points["seeds"] > points["tuning_seeds"])
        parts.append(points.drop(columns=["_point", "_accuracy", "_rank_loss", "_all_accuracy", "_all_loss", "_confirmed"], errors="ignore"))
    columns = [*group, *keys, "validation_accuracy", "validation_loss", "tuning_seeds", "seeds", "all_seeds_validation_accuracy", "diverged",
               "chosen", "edge", "untuned"]  # fmt: skip
    grid = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns).astype({"chosen": bool})
    return grid.sort_values([*group, *keys]).reset_index(drop=True)[columns]


def with_identity(rows: pd.DataFrame, selected: pd.DataFrame) -> pd.DataFrame:
    """rows of the selected runs only, joined with their identity columns."""
    if rows.empty:
        return rows
    identity = selected[IDENTITY]
    return rows.drop(columns=[c for c in ("variant", "task", "seed") if c in rows]).merge(identity, on="run")


def select_runs(runs: pd.DataFrame) -> Selection:
    """The protocol of this module's docstring: each protocol's runs selected under their own keys."""
    for column in PROTOCOL_COLUMNS:
        if column not in runs:
            runs = runs.assign(**{column: "train.lr" if column.endswith("select_on") else "none"})
    runs = runs.assign(**{column: runs[column].fillna("") for column in PROTOCOL_COLUMNS})
    parts = [
        select_under_one_protocol(group, tuple(key for key in select_on.split(",") if key))
        for (select_on, _), group in runs.groupby(PROTOCOL_COLUMNS, sort=True)
    ]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return select_under_one_protocol(runs, ())
    return Selection(
        pd.concat([p.selected for p in parts], ignore_index=True), pd.concat([p.runs for p in parts]),
        pd.concat([p.grid for p in parts], ignore_index=True),
        list(dict.fromkeys(key for p in parts for key in p.select_on)), list(dict.fromkeys(c for p in parts for c in p.settings)),
    )  # fmt: skip


def roles(selected: pd.DataFrame) -> pd.Series:
    """'constructed' (set by construction, not trained), 'control', or 'model', per run."""
    constructed = selected["trained"].eq(False)
    control = selected["control"].eq(True)
    return pd.Series(["constructed" if c else "control" if k else "model" for c, k in zip(constructed, control)], index=selected.index)


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




def mad_scores(selection: Selection) -> pd.DataFrame:
    """The MAD score (Poli et al. 2024) per model and seed, for the runs whose protocol scores 'mad':
    the mean over tasks of the mean over that task's difficulty settings of the selected test
    accuracy. A seed missing any task x setting that the experiment ran (a failed run) gets no score,
    rather than a mean over fewer settings: columns model, seed, score, settings (present / expected)."""
    runs = selection.selected
    runs = runs[runs["protocol.score"].eq("mad") & runs["trained"].ne(False) & runs["control"].ne(True)] if "protocol.score" in runs else runs.iloc[:0]
    if runs.empty:
        return pd.DataFrame(columns=["model", "seed", "score", "settings"])
    runs = runs.assign(model=model_label(runs, selection, swept_axes(selection)), point=point_labels(runs, swept_axes(selection)))
    expected = runs[["task", "point"]].drop_duplicates()
    rows = []
    for (model, seed), group in runs.groupby(["model", "seed"]):
        present = group[["task", "point"]].drop_duplicates().merge(expected)
        complete = len(present) == len(expected)
        per_task = group.groupby(["task", "point"])["test_accuracy"].mean().groupby("task").mean()
        rows.append({"model": model, "seed": seed, "score": per_task.mean() if complete else math.nan,
                     "settings": f"{len(present)}/{len(expected)}"})  # fmt: skip
    return pd.DataFrame(rows)


def mad_leaderboard(selection: Selection) -> pd.DataFrame:
    """Per model, the MAD score's mean and 95% interval over the seeds that have one, ranked."""
    scores = mad_scores(selection)
    if scores.empty:
        return scores
    board = (
        scores.groupby("model")
        .agg(mad_score=("score", describe), mean=("score", "mean"), scored_seeds=("score", lambda s: f"{s.notna().sum()}/{len(s)}"),
             settings=("settings", "min"))
        .sort_values("mean", ascending=False, na_position="last")
        .drop(columns="mean")
        .reset_index()
    )  # fmt: skip
    board.insert(0, "rank", range(1, len(board) + 1))
    return board


# A run trained under contention when it got less than this share of the cores it asked for.
CONTENDED_SHARE = 0.8


def contended(curves: pd.DataFrame) -> pd.DataFrame:
    """Per selected run: the median share of its asked-for cores it got, the machine's median load
    while it trained, and whether it counts as contended (below CONTENDED_SHARE)."""
    intervals = curves.dropna(subset=["tokens_per_s"]) if "tokens_per_s" in curves else curves.iloc[:0]
    if intervals.empty:
        return pd.DataFrame(columns=["run", "setting", "task", "share", "load", "contended"])
    per_run = intervals.groupby(["run", "setting", "task"]).agg(share=("cpu_share", "median"), load=("load_1min", "median")).reset_index()
    return per_run.assign(contended=per_run["share"] < CONTENDED_SHARE)


def contention_note(curves: pd.DataFrame) -> list[str]:
    """A sentence for the findings where some runs trained on a busy machine."""
    per_run = contended(curves)
    count = int(per_run["contended"].sum())
    if not count:
        return []
    return [f"{count} of {len(per_run)} runs trained with less than {CONTENDED_SHARE:.0%} of the cores they asked for "
            "(the machine was busy): their throughput understates the variant."]  # fmt: skip
