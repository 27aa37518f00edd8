"""`python -m bench.report <sweep_dir>`: gather every result.json under a directory into tidy
tables and a Markdown summary under ``reports/<sweep name>/``.

    results.parquet / results.csv   one row per run: identity, status, metrics, flattened config
    curves.parquet / curves.csv     one row per run and evaluation step: the learning curves
    report.md                       accuracy mean ± std over seeds and steps to target,
                                    variant × task; failed, diverged and unfinished runs listed
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import RESULT_FILE, atomic_path

REPORTS_DIR = Path("reports")
RUN_COLUMNS = ["variant", "task", "seed", "status"]
# Config columns that identify a run's place in a sweep without being a setting worth grouping by.
NOT_SETTINGS = {"seed", "variant.name", "task.name", "train.progress", "train.num_threads"}


def load_results(sweep_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, curves): one row per result.json under sweep_dir, and one per evaluation step."""
    runs, curves = [], []
    for path in sorted(sweep_dir.rglob(RESULT_FILE)):
        run_id = str(path.parent.relative_to(sweep_dir))
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            runs.append({"run": run_id, "status": "unreadable", "error": f"{type(error).__name__}: {error}"})
            continue
        runs.append({"run": run_id, **run_row(record)})
        identity = {key: record.get(key) for key in ("variant", "task", "seed")}
        curves.extend({"run": run_id, **identity, **point} for point in record.get("curve", []))
    runs = pd.DataFrame(runs, columns=None if runs else ["run", *RUN_COLUMNS])
    kept = latest_per_config(runs)
    curves = pd.DataFrame(curves)
    return kept, curves[curves["run"].isin(kept["run"])] if len(curves) else curves


def latest_per_config(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per config hash (a sweep re-run into another directory must not count twice):
    a completed run before any other, then the one that finished last."""
    if "config_hash" not in runs or runs["config_hash"].isna().all():
        return runs
    order = runs.assign(_completed=runs["status"] == "completed").sort_values(["_completed", "finished_at"], na_position="first")
    hashed = order[order["config_hash"].notna()].drop_duplicates("config_hash", keep="last")
    return pd.concat([hashed, order[order["config_hash"].isna()]]).drop(columns="_completed").sort_index()


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    environment = record.get("environment", {})
    row = {key: record.get(key) for key in RUN_COLUMNS}
    row.update({f"final_{key}": value for key, value in record.get("metrics", {}).items()})
    for key in ("steps_to_target", "steps_run", "n_params", "wall_time_s", "train_tokens_per_s", "finished_at", "error"):
        row[key] = record.get(key)
    row.update(config_hash=record.get("config_hash"), git_commit=environment.get("git_commit"))
    row.update(flatten(record.get("config", {})))
    return row


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def swept_settings(runs: pd.DataFrame) -> list[str]:
    """Config columns that differ between runs of the same task (besides variant and seed)."""
    config_columns = [c for c in runs.columns if "." in c and c not in NOT_SETTINGS]
    by_task = runs.astype({c: str for c in config_columns}).groupby("task")
    return [c for c in config_columns if (by_task[c].nunique() > 1).any()]


def setting_labels(runs: pd.DataFrame, settings: list[str]) -> pd.Series:
    """'standard', or 'standard (train.lr=0.001)' where a sweep varied more than variant and seed."""
    labels = runs["variant"].astype(str)
    for column in settings:
        labels = labels + f" {column}=" + runs[column].astype(str)
    return labels


def mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f} (n=1)"
    return f"{values.mean():.3f} ± {values.std():.3f} (n={len(values)})"


def reached(values: pd.Series) -> str:
    hits = values.dropna()
    median = f"{hits.median():.0f}" if len(hits) else "—"
    return f"{median} ({len(hits)}/{len(values)})"


def summary_tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    done = runs[runs["status"] == "completed"]
    if done.empty:
        return {}
    done = done.assign(setting=setting_labels(done, swept_settings(done)))
    grouped = done.groupby(["setting", "task"])
    return {
        "Eval accuracy on scored positions, mean ± std over seeds": grouped["final_accuracy"].agg(mean_std).unstack("task"),
        "Exact match (every scored token of a sequence right), mean ± std over seeds": grouped["final_exact_match"].agg(mean_std).unstack("task"),
        "Steps to target accuracy: median over the seeds that reached it (reached / runs)": grouped["steps_to_target"].agg(reached).unstack("task"),
        "Training throughput, tokens/s (mean)": grouped["train_tokens_per_s"].mean().round(0).unstack("task"),
    }


def markdown(runs: pd.DataFrame, name: str) -> str:
    counts = runs["status"].value_counts()
    lines = [f"# Sweep `{name}`", "", f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "."]
    if len(runs) and "train.target_accuracy" in runs:
        lines.append(f"Target accuracy: {', '.join(map(str, runs['train.target_accuracy'].dropna().unique()))}.")
    for title, table in summary_tables(runs).items():
        lines += ["", f"## {title}", "", table.to_markdown()]
    unfinished = runs[runs["status"] != "completed"]
    if len(unfinished):
        columns = [c for c in ["run", *RUN_COLUMNS, "error"] if c in unfinished]
        lines += ["", "## Runs that did not complete", "", unfinished[columns].to_markdown(index=False)]
    commits = sorted({str(c) for c in runs.get("git_commit", pd.Series(dtype=str)).dropna()})
    if commits:
        lines += ["", f"Git commit: {', '.join(commits)}."]
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: Path, out_dir: Path | None = None) -> Path:
    """Write the tables and report.md for sweep_dir; returns the path of report.md."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep directory at {sweep_dir}")
    out_dir = out_dir or REPORTS_DIR / sweep_dir.resolve().name
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, curves = load_results(sweep_dir)
    for table, stem in ((runs, "results"), (curves, "curves")):
        with atomic_path(out_dir / f"{stem}.parquet") as temporary:
            table.to_parquet(temporary, index=False)
        with atomic_path(out_dir / f"{stem}.csv") as temporary:
            table.to_csv(temporary, index=False)
    report = out_dir / "report.md"
    with atomic_path(report) as temporary:
        temporary.write_text(markdown(runs, sweep_dir.resolve().name))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a directory with result.json files below it")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: reports/<sweep name>)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"no sweep directory at {args.sweep_dir}")
    print(f"report: {write_report(args.sweep_dir, args.out)}")


if __name__ == "__main__":
    main()
