"""The report's data: every result file of one or more sweeps as tidy tables, and the one set of
runs behind every table and figure.

The protocol, in order:
1. One row per config: a config run twice (in two sweeps, or twice into one) counts once, the
   completed run first, then the one that finished last.
2. A setting is a variant plus every config value that differs between runs of the same variant
   and task, other than the seed and the learning rate.
3. Over the selection grid (the runs' ``protocol.select_on`` keys, the learning rate by default;
   MAD's experiment adds weight decay), each setting x task keeps the grid point with the best
   mean final *validation* accuracy over its seeds; a diverged seed counts as 0 there, a failed
   one (an error, not a result) is left out. Ties go to the lower validation loss.
4. The selected runs are the completed runs at that point. Every section reports their *test*
   numbers; the others are counted and listed, never averaged in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.config import RUN_CONTROL_KEYS
from bench.core.measure import stored_rows
from bench.core.results import RESULT_FILE, UNSTARTABLE_FILE, process_alive, read_result
from tasks import TASKS

RUN_COLUMNS = ["variant", "task", "seed", "status"]
# Test accuracy a run must reach and keep to the end of its curve to count as grokked.
GROKKED = 0.95
# Columns every runs table has, so that a sweep of failed runs alone still makes a report.
EXPECTED_COLUMNS = ["run", *RUN_COLUMNS, "validation_accuracy", "validation_loss", "test_accuracy", "test_loss",
                    "test_exact_match", "steps_to_target", "chance_accuracy", "n_params", "trained", "control", "finished_at",
                    "config_hash", "error", "train.lr", "train_set_size", "steps_to_grok"]  # fmt: skip
# Config columns that place a run in a sweep, or steer how it ran, rather than settings to compare.
NOT_SETTINGS = {"seed", "variant.name", "task.name", *RUN_CONTROL_KEYS}
DEFAULT_SELECTION = ("train.lr",)
IDENTITY = ["run", "variant", "task", "seed", "setting"]


@dataclass
class Results:
    runs: pd.DataFrame  # one row per config: identity, status, metrics, flattened config
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # run x evaluation step
    slices: pd.DataFrame = field(default_factory=pd.DataFrame)  # run x slice value (test set)
    analyses: dict[str, pd.DataFrame] = field(default_factory=dict)  # analysis name -> run x row
    job_dirs: dict[str, Path] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def protocol(self) -> dict[str, Any]:
        """The runs' report protocol (protocol.select_on, protocol.score): the first run's that has one."""
        for record in self.records.values():
            protocol = (record.get("config") or {}).get("protocol")
            if isinstance(protocol, dict):
                return protocol
        return {"select_on": list(DEFAULT_SELECTION), "score": "none"}


def load_results(*sweep_dirs: Path) -> Results:
    """Every result.json under the sweep directories, one row per config."""
    runs, curves, slices, records, job_dirs = [], [], [], {}, {}
    analysis_rows: dict[str, list[dict]] = {}
    for sweep_dir in map(Path, sweep_dirs):
        for path in sorted(sweep_dir.rglob(RESULT_FILE)):
            relative = str(path.parent.relative_to(sweep_dir))
            run_id = relative if len(sweep_dirs) == 1 else f"{sweep_dir.name}/{relative}"
            record = read_result(path)
            if not isinstance(record, dict):
                runs.append({"run": run_id, "status": "unreadable", "error": f"{RESULT_FILE} could not be read as a JSON object"})
                continue
            records[run_id], job_dirs[run_id] = record, path.parent
            runs.append({"run": run_id, **run_row(record)})
            identity = {"run": run_id, "variant": record.get("variant"), "task": record.get("task"), "seed": record.get("seed")}
            curves.extend({**identity, **point} for point in record.get("curve") or [] if isinstance(point, dict))
            slices.extend({**identity, **row} for row in record.get("test_slices") or [] if isinstance(row, dict))
            for name, rows in stored_rows(path.parent).items():
                analysis_rows.setdefault(name, []).extend({"run": run_id, **row} for row in rows if isinstance(row, dict))
        runs += unstartable_rows(sweep_dir, len(sweep_dirs) > 1)
    runs = pd.DataFrame(runs)
    runs = latest_per_config(runs.reindex(columns=[*runs.columns, *(c for c in EXPECTED_COLUMNS if c not in runs.columns)]))
    kept = set(runs["run"])
    return Results(
        runs, rows_of(curves, kept), rows_of(slices, kept),
        {name: rows_of(rows, kept) for name, rows in analysis_rows.items()},
        {run: path for run, path in job_dirs.items() if run in kept},
        {run: record for run, record in records.items() if run in kept},
    )  # fmt: skip


def unstartable_rows(sweep_dir: Path, prefixed: bool) -> list[dict[str, Any]]:
    """Jobs of the sweep that could not write into their own directory (and have no result there since)."""
    entries = read_result(sweep_dir / UNSTARTABLE_FILE)
    rows = []
    for entry in entries if isinstance(entries, list) else []:
        job = str(entry.get("job")) if isinstance(entry, dict) else None
        if job is None or (sweep_dir / job / RESULT_FILE).is_file():
            continue
        rows.append({"run": f"{sweep_dir.name}/{job}" if prefixed else job, "status": "failed",
                     "error": f"could not start in its directory: {entry.get('error')}"})  # fmt: skip
    return rows


def rows_of(rows: list[dict[str, Any]], runs: set[str]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    return table[table["run"].isin(runs)].reset_index(drop=True) if len(table) else table


def latest_per_config(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per config hash: a completed run before any other, then the one that finished last."""
    if "config_hash" not in runs or runs["config_hash"].isna().all():
        return runs
    order = runs.assign(_completed=runs["status"] == "completed").sort_values(["_completed", "finished_at"], na_position="first")
    hashed = order[order["config_hash"].notna()].drop_duplicates("config_hash", keep="last")
    return pd.concat([hashed, order[order["config_hash"].isna()]]).drop(columns="_completed").sort_index()


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    environment = record.get("environment") if isinstance(record.get("environment"), dict) else {}
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    steps_to_target = record.get("steps_to_target") if isinstance(record.get("steps_to_target"), dict) else {}
    row = {key: record.get(key) for key in RUN_COLUMNS}
    if row["status"] == "running" and process_alive(record.get("pid"), environment.get("hostname")) is False:
        row.update(status="killed", error="its process ended without recording a result (killed?); run the sweep again to redo it")
    for split, values in metrics.items():
        if isinstance(values, dict):
            row.update({f"{split}_{key}": value for key, value in values.items()})
    row["steps_to_target"] = steps_to_target.get("test")
    row["steps_to_grok"] = steps_to_grok(record.get("curve"))
    for key in ("steps_run", "n_params", "trained", "control", "chance_accuracy", "train_set_size", "wall_time_s", "train_tokens_per_s", "num_threads", "finished_at", "error", "config_hash"):
        row[key] = record.get(key)
    row["git_commit"] = environment.get("git_commit")
    row.update(flatten(record.get("config") if isinstance(record.get("config"), dict) else {}))
    return row


def steps_to_grok(curve: Any, threshold: float = GROKKED) -> int | None:
    """The first evaluation step from which test accuracy stays >= threshold to the end of the curve."""
    points = [p for p in curve or [] if isinstance(p, dict) and isinstance(p.get("test_accuracy"), (int, float))]
    grokked = None
    for point in reversed(points):
        if point["test_accuracy"] < threshold:
            break
        grokked = point.get("step")
    return grokked


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if key in ("analysis", "protocol") and not prefix:
            continue  # analysis options travel with each analysis's output; the protocol is the report's
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if not isinstance(value, list) else str(value)
    return flat


def swept_settings(runs: pd.DataFrame, select_on: tuple[str, ...] = DEFAULT_SELECTION) -> list[str]:
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


def select_runs(runs: pd.DataFrame, select_on: tuple[str, ...] = DEFAULT_SELECTION) -> Selection:
    """The protocol of this module's docstring."""
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
