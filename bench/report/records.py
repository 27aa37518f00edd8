"""The report's data: every result file of one or more sweeps, or a report's own saved tables, as
tidy tables: one row per run (one per config: a config run twice, in two sweeps or twice into one,
counts once, the completed run first, then the one that finished last), and its curves, slices
and analysis rows. Which of these runs a report uses is bench.report.protocol's to decide.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.config import RUN_CONTROL_KEYS
from bench.core.measure import stored_rows
from bench.core.results import JOBS_FILE, RESULT_FILE, UNSTARTABLE_FILE, dotted, process_alive, read_json, read_result, record_problem

log = logging.getLogger(__name__)
RUN_COLUMNS = ["variant", "task", "seed", "status"]
# Test accuracy a run must reach and keep to the end of its curve to count as grokked, read through a
# centred running median over GROKKING_WINDOW evaluations: full-batch Adam can knock a grokked run
# down for an evaluation or two (0.987, 0.711, 0.99 ...), which says nothing about when it grokked.
GROKKED = 0.95
GROKKING_WINDOW = 5
# Columns every runs table has, so that a sweep of failed runs alone still makes a report.
EXPECTED_COLUMNS = ["run", *RUN_COLUMNS, "validation_accuracy", "validation_loss", "test_accuracy", "test_loss",
                    "test_exact_match", "steps_to_target", "chance_accuracy", "n_params", "trained", "control", "finished_at",
                    "config_hash", "error", "train.lr", "train_set_size", "steps_to_grok", "chance_given_context", "budget_status",
                    "budget_steps", "test_scored"]  # fmt: skip
DEFAULT_PROTOCOL = {"select_on": ["train.lr"], "score": "none"}
# The parts of a run's code identity (bench.core.results.code_identity), each a column code_<part>.
CODE_PARTS = ("core", "tasks", "variants")
# The tables a report saves beside itself (report_dir/<stem>.parquet), from which it can be rebuilt.
TABLES = ("results", "curves", "slices")


@dataclass
class Results:
    runs: pd.DataFrame  # one row per config: identity, status, metrics, flattened config
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # run x evaluation step
    slices: pd.DataFrame = field(default_factory=pd.DataFrame)  # run x slice value (test set)
    analyses: dict[str, pd.DataFrame] = field(default_factory=dict)  # analysis name -> run x row
    job_dirs: dict[str, Path] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_results(*sweep_dirs: Path) -> Results:
    """Every result.json under the sweep directories, one row per config."""
    runs, curves, slices, records, job_dirs = [], [], [], {}, {}
    analysis_rows: dict[str, list[dict]] = {}
    sweep_dirs = tuple(dict.fromkeys(Path(os.path.abspath(d)) for d in sweep_dirs))  # a sweep named twice counts once
    for sweep_dir in sweep_dirs:
        for path in sorted(sweep_dir.rglob(RESULT_FILE)):
            relative = str(path.parent.relative_to(sweep_dir))
            run_id = relative if len(sweep_dirs) == 1 else f"{sweep_dir.name}/{relative}"
            try:
                record = read_json(path)
            except ValueError as error:
                runs.append({"run": run_id, "status": "unreadable", "error": str(error)})
                continue
            problem = record_problem(record)
            if problem is not None:
                runs.append({"run": run_id, "status": "unreadable", "error": f"{RESULT_FILE} is left out: {problem}"})
                continue
            records[run_id], job_dirs[run_id] = record, path.parent
            runs.append({"run": run_id, **run_row(record)})
            identity = {"run": run_id, "variant": record.get("variant"), "task": record.get("task"), "seed": record.get("seed")}
            curves.extend({**identity, **point} for point in record.get("curve") or [] if isinstance(point, dict))
            slices.extend({**identity, **row} for row in record.get("test_slices") or [] if isinstance(row, dict))
            for name, rows in stored_rows(path.parent).items():
                analysis_rows.setdefault(name, []).extend({"run": run_id, **row} for row in rows if isinstance(row, dict))
        runs += unstartable_rows(sweep_dir, len(sweep_dirs) > 1)
    runs = set_aside_mistyped(pd.DataFrame(runs))
    runs = latest_per_config(runs.reindex(columns=[*runs.columns, *(c for c in EXPECTED_COLUMNS if c not in runs.columns)]))
    kept = set(runs["run"])
    return Results(
        runs, rows_of(curves, kept), rows_of(slices, kept),
        {name: drop_mistyped(rows_of(rows, kept), f"analysis {name}") for name, rows in analysis_rows.items()},
        {run: path for run, path in job_dirs.items() if run in kept},
        {run: record for run, record in records.items() if run in kept},
    )  # fmt: skip


def value_kind(value: Any) -> str | None:
    """number, text, flag or other; None for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "flag"
    return "number" if isinstance(value, (int, float)) else "text" if isinstance(value, str) else "other"


def mistyped(table: pd.DataFrame) -> dict[int, str]:
    """Rows (by index) holding a value of another kind than the rest of its column (text among
    numbers, say), each with the first such column: one hand-edited record must not change a column
    for every run, nor stop its table from being written."""
    found: dict[int, str] = {}
    for column in table.columns[table.dtypes == object]:
        kinds = table[column].map(value_kind)
        counts = kinds.value_counts()
        if len(counts) < 2:
            continue
        usual = max(counts.index, key=lambda kind: (counts[kind], kind == "number"))
        for index in kinds.index[kinds.notna() & (kinds != usual)]:
            found.setdefault(index, f"{column} is {table.at[index, column]!r} where the other rows have a {usual}")
    return found


def set_aside_mistyped(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose record holds a value of the wrong kind for its column become unreadable, named."""
    for index, problem in mistyped(runs.drop(columns=["error"], errors="ignore")).items():
        run = runs.at[index, "run"]
        runs.loc[index] = None
        runs.loc[index, ["run", "status", "error"]] = [run, "unreadable", f"{RESULT_FILE} is left out: {problem}"]
    return runs


def drop_mistyped(rows: pd.DataFrame, what: str) -> pd.DataFrame:
    """The rows without a value of the wrong kind for its column; each dropped row is named in the log."""
    problems = mistyped(rows)
    for index, problem in problems.items():
        log.warning("%s: a row of run %s is left out: %s", what, rows.at[index, "run"], problem)
    return rows.drop(index=list(problems)).reset_index(drop=True) if problems else rows


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
    """One row per config hash: a completed run before any other, then the one that finished last,
    then, between copies of one record (a sweep's run that its --baseline also holds), the later row."""
    if "config_hash" not in runs or runs["config_hash"].isna().all():
        return runs
    ranked = runs.assign(_completed=runs["status"] == "completed", _row=range(len(runs)))
    order = ranked.sort_values(["_completed", "finished_at", "_row"], na_position="first")
    hashed = order[order["config_hash"].notna()].drop_duplicates("config_hash", keep="last")
    return pd.concat([hashed, order[order["config_hash"].isna()]]).drop(columns=["_completed", "_row"]).sort_index()


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    environment = record.get("environment") if isinstance(record.get("environment"), dict) else {}
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    steps_to_target = record.get("steps_to_target") if isinstance(record.get("steps_to_target"), dict) else {}
    row = {key: record.get(key) for key in RUN_COLUMNS}
    if row["status"] == "running":
        alive = process_alive(record.get("pid"), environment.get("hostname"))
        row["error"] = {
            False: "its process ended without recording a result (killed?); run the sweep again to redo it",
            True: f"still running as process {record.get('pid')}",
            None: f"started on {environment.get('hostname') or 'a machine it did not name'}, which this machine cannot check: "
                  "still running there, or stopped",
        }[alive]
        if alive is False:
            row["status"] = "killed"
    for split, values in metrics.items():
        if isinstance(values, dict):
            row.update({f"{split}_{key}": value for key, value in values.items()})
    row["steps_to_target"] = steps_to_target.get("test")
    row["steps_to_grok"] = steps_to_grok(record.get("curve"))
    budget = record.get("budget") if isinstance(record.get("budget"), dict) else {}
    row.update({"budget_status": budget.get("status"), "budget_steps": budget.get("steps"), "budget_extensions": budget.get("extensions"),
                "validation_loss_drop": budget.get("validation_loss_drop"), "test_scored": (metrics.get("test") or {}).get("scored")})  # fmt: skip
    for key in ("steps_run", "n_params", "trained", "control", "chance_accuracy", "chance_given_context", "train_set_size", "wall_time_s", "train_tokens_per_s", "num_threads", "finished_at", "config_hash"):
        row[key] = record.get(key)
    row["error"] = record.get("error") or row.get("error")
    for key in ("git_commit", "git_dirty", "command", "machine"):
        row[key] = environment.get(key)
    row["versions"] = ", ".join(f"{k} {v}" for k, v in environment.get("versions", {}).items()) if isinstance(environment.get("versions"), dict) else None
    code = record.get("code") if isinstance(record.get("code"), dict) else {}
    row.update({f"code_{part}": code.get(part) for part in CODE_PARTS})  # what --baseline compares (baseline_conflicts)
    row["started_at"] = record.get("started_at")
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    row.update(dotted(config, skip=("analysis", "protocol")))  # analysis options travel with each analysis's output; the protocol is the report's
    protocol = config.get("protocol") if isinstance(config.get("protocol"), dict) else DEFAULT_PROTOCOL
    row["protocol.select_on"] = ",".join(protocol.get("select_on") or [])  # each run carries its own report protocol
    row["protocol.score"] = protocol.get("score", "none")
    return row


def steps_to_grok(curve: Any, threshold: float = GROKKED, window: int = GROKKING_WINDOW) -> int | None:
    """The first evaluation step from which test accuracy, as a centred running median over `window`
    evaluations, stays >= threshold to the end of the curve (so that no one evaluation, up nor down,
    sets it); None if it never does."""
    points = pd.DataFrame([p for p in curve or [] if isinstance(p, dict) and isinstance(p.get("test_accuracy"), (int, float))],
                          columns=["step", "test_accuracy"])  # fmt: skip
    smoothed = points["test_accuracy"].rolling(window, center=True, min_periods=1).median()
    below = (smoothed < threshold).to_numpy().nonzero()[0]
    first = below[-1] + 1 if len(below) else 0
    return int(points["step"].iloc[first]) if first < len(points) else None


def load_tables(report_dir: Path) -> Results:
    """A report's own saved tables (results, curves, slices, analysis_<name> as Parquet) as Results:
    what a committed example report keeps of its sweep, without the sweep."""
    report_dir = Path(report_dir)
    runs, curves, slices = (pd.read_parquet(report_dir / f"{stem}.parquet") for stem in TABLES)
    for column in ("protocol.select_on", "protocol.score"):
        if column not in runs:
            runs[column] = ",".join(DEFAULT_PROTOCOL["select_on"]) if column.endswith("select_on") else DEFAULT_PROTOCOL["score"]
    analyses = {path.stem.removeprefix("analysis_"): pd.read_parquet(path) for path in sorted(report_dir.glob("analysis_*.parquet"))}
    return Results(runs.reindex(columns=[*runs.columns, *(c for c in EXPECTED_COLUMNS if c not in runs.columns)]), curves, slices, analyses)


def expected_jobs(sweep_dir: Path) -> list[str] | None:
    """The job directories the sweep asked for when it started; None where it did not record them."""
    jobs = read_result(Path(sweep_dir) / JOBS_FILE)
    return [str(job) for job in jobs] if isinstance(jobs, list) else None


def missing_jobs(results: Results, sweep_dirs: list[Path]) -> dict[Path, tuple[int, list[str]]]:
    """Per sweep that recorded its jobs: (how many it asked for, those with no result yet)."""
    missing = {}
    for sweep_dir in sweep_dirs:
        expected = expected_jobs(sweep_dir)
        if expected is None:
            continue
        prefix = f"{sweep_dir.name}/" if len(sweep_dirs) > 1 else ""
        present = set(results.job_dirs) | set(results.runs["run"])
        shared = {job for job in expected if (Path(sweep_dir) / job / RESULT_FILE).exists()}  # counted once under another run
        missing[sweep_dir] = (len(expected), sorted(prefix + job for job in expected if prefix + job not in present and job not in shared))
    return missing


def with_baseline(results: Results, baseline_dir: Path) -> Results:
    """results beside the runs of a committed report (its saved tables, run ids prefixed with its
    directory's name): a new variant's runs compared against shipped ones without re-training them.
    Raises BaselineMismatch where the two were not made under the same definitions."""
    baseline = load_tables(baseline_dir)
    prefix = f"{Path(baseline_dir).name}/"
    conflicts = baseline_conflicts(baseline.runs, results.runs)
    if conflicts:
        raise BaselineMismatch(f"--baseline {baseline_dir} was made under other definitions than these runs: {'; '.join(conflicts)}")
    own = set(results.runs["run"])
    if any(prefix + run in own for run in baseline.runs["run"]):
        raise BaselineMismatch(f"--baseline {baseline_dir}: its run names clash with the sweep's; name the sweep's directory otherwise")

    def prefixed(table: pd.DataFrame) -> pd.DataFrame:
        """The baseline's rows under its name (once: a report re-rendered in place already carries it)."""
        if "run" not in table:
            return table
        run = table["run"].astype(str)
        return table.assign(run=run.where(run.str.startswith(prefix), prefix + run))

    # the sweep's rows last: where it re-reads a run the baseline holds, its own record (with the run's
    # files, which the analyses' figures read) is the one kept, and the baseline's copy leaves no rows
    runs = latest_per_config(pd.concat([prefixed(baseline.runs), results.runs], ignore_index=True))
    kept = set(runs["run"])

    def beside(own: pd.DataFrame, shipped: pd.DataFrame) -> pd.DataFrame:
        shipped = prefixed(shipped)
        return pd.concat([own, shipped[shipped["run"].isin(kept)] if "run" in shipped else shipped], ignore_index=True)

    return Results(
        runs, beside(results.curves, baseline.curves), beside(results.slices, baseline.slices),
        {name: beside(results.analyses.get(name, pd.DataFrame()), baseline.analyses.get(name, pd.DataFrame()))
         for name in {*results.analyses, *baseline.analyses}},
        results.job_dirs, results.records,
    )  # fmt: skip


class BaselineMismatch(ValueError):
    """A --baseline report whose runs were made under other definitions than the sweep's."""


# What must be equal for runs to stand beside a baseline's: the model, the training protocol (but the
# keys a sweep tunes or varies), the task's definition at each task, and the code that makes the numbers
# (but the variant's own). Seeds, variant options and run-control keys may differ.
COMPARED_PREFIXES = ("model.", "train.", "task.")
MAY_DIFFER = {"train.lr", "train.weight_decay", *RUN_CONTROL_KEYS}


def baseline_conflicts(baseline: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """Per task the two share, each definition whose values differ: 'model.d_model is 128 here, 64 in
    the baseline'; also a task the baseline does not have. Empty when the runs may stand beside it."""
    completed = runs[runs["status"] == "completed"]
    shipped = baseline[baseline["status"] == "completed"]
    conflicts = []
    for task, own in completed.groupby("task"):
        theirs = shipped[shipped["task"] == task]
        if theirs.empty:
            conflicts.append(f"task {task} is not in the baseline (it has {', '.join(sorted(shipped['task'].unique()))})")
            continue
        columns = [c for c in own.columns if c.startswith(COMPARED_PREFIXES) and c not in MAY_DIFFER and c in theirs]
        columns += [f"code_{part}" for part in CODE_PARTS if part != "variants"]
        for column in columns:
            here, there = values_of(own, column), values_of(theirs, column)
            if here - there:
                conflicts.append(f"{task}: {column} is {', '.join(sorted(here - there))} here, {', '.join(sorted(there)) or 'unrecorded'} in the baseline")
    return conflicts


def values_of(runs: pd.DataFrame, column: str) -> set[str]:
    """The column's values as text, a whole float as its integer (a table read back from Parquet
    holds 32.0 where a column also has a missing value)."""
    if column not in runs:
        return set()
    return {str(int(value)) if isinstance(value, float) and value.is_integer() else str(value) for value in runs[column].dropna()}
