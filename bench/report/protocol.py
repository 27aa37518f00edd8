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
   final *validation* accuracy over its seeds; a diverged seed counts as 0 there, a failed one (an
   error, not a result) is left out. Ties go to the lower validation loss.
4. The selected runs are the completed runs at that point. Every section reports their *test*
   numbers; the others are counted and listed, never averaged in.

Verdict rules: roles (model, constructed, control), "at chance", "tie", where a model "breaks"
along a difficulty axis, the seeds a two-sample t-test would need, and the MAD score.
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
# A setting is "at chance" when its mean test accuracy is at most this factor of the chance level
# (or the chance level plus AT_CHANCE_MARGIN, whichever is larger).
AT_CHANCE, AT_CHANCE_MARGIN = 2.0, 0.02
# A loss is "flat" when training lowered the test loss by less than this fraction of its start.
FLAT_LOSS = 0.05
# Largest number of seeds per setting worth suggesting; beyond it a difference is called negligible.
MAX_SEEDS = 1000
# Means closer than this are a tie: no number of seeds makes such a difference worth stating.
TIE = 0.001
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
    scored = runs[runs["status"].isin(["completed", "diverged"])].assign(
        _validation=lambda t: t["validation_accuracy"].where(t["status"] == "completed", 0.0),
        _loss=lambda t: t["validation_loss"].where(t["status"] == "completed", math.inf),
    )
    keys = ["setting", "task", *select_on]
    grid = (
        scored.groupby(keys, dropna=False)
        .agg(validation_accuracy=("_validation", "mean"), validation_loss=("_loss", "mean"), seeds=("seed", "count"),
             diverged=("status", lambda s: int((s == "diverged").sum())))
        .reset_index()
    )  # fmt: skip
    grid = grid.sort_values(["setting", "task", "validation_accuracy", "validation_loss"], ascending=[True, True, False, True])
    grid["chosen"] = ~grid.duplicated(["setting", "task"])
    chosen = grid[grid["chosen"]][keys]
    completed = runs[runs["status"] == "completed"]
    selected = completed.merge(chosen, on=keys) if len(chosen) else completed.iloc[:0]
    return Selection(selected.sort_values(["setting", "task", "seed"]).reset_index(drop=True), runs, grid.reset_index(drop=True), select_on, settings)


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


def at_chance(accuracy: float, chance: float) -> bool:
    return accuracy <= max(AT_CHANCE * chance, chance + AT_CHANCE_MARGIN)


def seeds_to_resolve(difference: float, spread: float) -> int | None:
    """Seeds per setting for a two-sample t-test at 95% to tell a difference of this size apart at
    this spread (pooled standard deviation); None when it would take more than MAX_SEEDS."""
    from scipy import stats

    if spread == 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if stats.t.ppf(0.975, 2 * n - 2) * spread * math.sqrt(2 / n) < abs(difference):
            return n
    return None


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
