"""Building a report from one or more sweeps: the sections, the tables they rest on, and the files.

    report.md, report.html          the same report; the HTML is one self-contained file
    figures/*.png                   every figure
    results.parquet / .csv          one row per run: identity, status, metrics, flattened config
    curves / slices                 one row per run and evaluation step / test-set slice value
    analysis_<name>                 one row per run and analysis row

Every section rests on the same runs (bench.report.tables.select_runs) and reports test-set
numbers; each analysis contributes its own section from its stored rows.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analyses import ANALYSES, Block, Figure, SectionData
from analyses.plotting import bars_with_points
from analyses.statistics import INTERVAL_NOTE, describe
from bench.core.measure import read_tensors
from bench.core.results import JOBS_FILE
from bench.report import figures
from bench.report.difficulty import difficulty_blocks, difficulty_columns, mad_leaderboard, swept_axes, with_difficulty_point
from bench.report.findings import findings, roles
from bench.report.render import Section, html_page, markdown
from bench.report.speed import SWEEP_SPEED_FILE, speed_blocks
from bench.report.tables import GROKKED, Results, Selection, load_results, select_runs, with_identity

log = logging.getLogger(__name__)
# A run trained under contention when it got less than this share of the cores it asked for.
CONTENDED_SHARE = 0.8


def expected_jobs(sweep_dir: Path) -> list[str] | None:
    """The job directories the sweep asked for when it started; None where it did not record them."""
    try:
        jobs = json.loads((Path(sweep_dir) / JOBS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return [str(job) for job in jobs] if isinstance(jobs, list) else None


def overview_blocks(results: Results, selection: Selection, sweep_dirs: list[Path]) -> tuple[list[Block], list[str]]:
    runs = results.runs
    counts = ", ".join(f"{n} {s}" for s, n in runs["status"].fillna("no status").value_counts().items())
    blocks: list[Block] = [f"{len(runs)} runs from {len(sweep_dirs)} sweep{'s' if len(sweep_dirs) > 1 else ''}: {counts or 'none yet'}."]
    missing = []
    for sweep_dir in sweep_dirs:
        expected = expected_jobs(sweep_dir)
        if expected is None:
            continue
        prefix = f"{sweep_dir.name}/" if len(sweep_dirs) > 1 else ""
        present = set(results.job_dirs) | set(runs["run"])
        shared = {job for job in expected if (Path(sweep_dir) / job / "result.json").exists()}  # counted once under another run
        lost = sorted(job for job in expected if prefix + job not in present and job not in shared)
        missing += [prefix + job for job in lost]
        blocks.append(f"{prefix or 'The sweep'} asked for {len(expected)} jobs; {len(lost)} have no result yet.")
    blocks.append(
        f"Every table and figure below uses the same {len(selection.selected)} runs: the completed runs of each setting × task "
        f"at its {' × '.join(selection.select_on) or 'configuration'} chosen on the validation set. Every number is on the test set, "
        "which chose nothing."
    )  # fmt: skip
    return blocks, missing


def summary_blocks(selection: Selection, points: pd.DataFrame, figure_dir: Path) -> list[Block]:
    """points: the selected runs with their model and difficulty point (with_difficulty_point)."""
    selected = selection.selected.assign(role=roles(selection.selected))
    if points["point"].ne("").any():  # a difficulty ladder: one row per task x point, one column per model
        points = points.assign(model=points["model"].where(selected["role"] == "model", points["model"] + " (" + selected["role"] + ")"))
        order = points.sort_values(["task", *swept_axes(selection)])
        accuracy = points.groupby(["task", "point", "model"], sort=False)["test_accuracy"].agg(describe).unstack("model")
        accuracy = accuracy.reindex(pd.MultiIndex.from_frame(order[["task", "point"]].drop_duplicates())).reset_index()
    else:
        accuracy = selected.groupby(["setting", "role", "task"])["test_accuracy"].agg(describe).unstack("task").reset_index()
    accuracy.columns.name = None
    swept_grid = (selection.grid.groupby(["setting", "task"]).size() > 1).any()
    detail = (
        selected.groupby(["setting", "task"])
        .agg(test_accuracy=("test_accuracy", describe), exact_match=("test_exact_match", describe),
             validation_accuracy=("validation_accuracy", describe), steps_to_target=("steps_to_target", reached),
             chance=("chance_accuracy", "first"), parameters=("n_params", "first"),
             **{key: (key, "first") for key in selection.select_on})
        .reset_index()
        .round({"chance": 3})
    )  # fmt: skip
    path = figures_summary(selected, figure_dir)
    blocks: list[Block] = [
        f"Test accuracy on scored positions, {INTERVAL_NOTE}. Role: model (trained and ranked), constructed (weights "
        "set by hand, a reference) or control (shows what a task needs):",
        accuracy,
        Figure(path, "Test accuracy per setting: bar, mean over seeds with its 95% interval; dots, seeds."),
        "Exact match: share of test sequences with every scored token right. Validation accuracy: the set that chose "
        "the learning rate and the early stop. Steps to target: median step at which test accuracy first reached the "
        "target, over the seeds that reached it (reached / seeds). Chance: the best context-free guess.",
        detail,
    ]
    if swept_grid:
        grid = selection.grid.round({"validation_accuracy": 3, "validation_loss": 3})
        blocks += [f"Selection grid ({', '.join(selection.select_on)}): mean final validation accuracy per point (a diverged "
                   "seed counts as 0); the chosen point gives every number above.", grid]  # fmt: skip
    return blocks


def figures_summary(selected: pd.DataFrame, figure_dir: Path) -> Path:
    return bars_with_points(selected.assign(metric="test accuracy"), "test_accuracy", col="task", row="metric",
                            ylabel="test accuracy", path=figure_dir / "summary.png")  # fmt: skip


def reached(values: pd.Series) -> str:
    hits = values.dropna()
    median = f"{hits.median():.0f}" if len(hits) else "—"
    return f"{median} ({len(hits)}/{len(values)})"


def throughput_blocks(results: Results, selection: Selection) -> tuple[list[Block], list[str]]:
    """Training tokens/s from the training steps alone (evaluations excluded), its spread over the
    run's intervals, and the machine's load while it trained; runs that got less than
    CONTENDED_SHARE of their cores are flagged."""
    curves = with_identity(results.curves, selection.selected)
    if curves.empty or "tokens_per_s" not in curves or curves["tokens_per_s"].isna().all():
        return [], []
    intervals = curves.dropna(subset=["tokens_per_s"])
    per_run = intervals.groupby(["run", "setting", "task"]).agg(share=("cpu_share", "median"), load=("load_1min", "median")).reset_index()
    per_run["contended"] = per_run["share"] < CONTENDED_SHARE
    table = (
        intervals.groupby(["setting", "task"])["tokens_per_s"]
        .agg(tokens_per_s="median", q1=lambda v: v.quantile(0.25), q3=lambda v: v.quantile(0.75))
        .join(per_run.groupby(["setting", "task"]).agg(cpu_share=("share", "median"), load_1min=("load", "median"),
                                                        contended_runs=("contended", lambda c: f"{int(c.sum())}/{len(c)}")))
        .reset_index()
        .round({"tokens_per_s": 0, "q1": 0, "q3": 0, "cpu_share": 2, "load_1min": 2})
    )  # fmt: skip
    contended = int(per_run["contended"].sum())
    notes = [f"{contended} of {len(per_run)} runs trained with less than {CONTENDED_SHARE:.0%} of the cores they asked for "
             "(the machine was busy): their throughput understates the variant."] if contended else []  # fmt: skip
    return [
        "Training throughput from the training steps alone (evaluations excluded): median tokens/s over every "
        "evaluation interval of every seed, with its interquartile range (q1, q3); cpu_share is the share of the asked-for "
        f"cores the process got, load_1min the machine's load average while it trained; a run below {CONTENDED_SHARE:.0%} "
        "counts as contended. Compare variants' speed in the speed section, measured alone; these are whole-model, "
        "whole-run figures.",
        table,
    ], notes


def grokking_blocks(curves: pd.DataFrame, selected: pd.DataFrame, figure_dir: Path) -> list[Block]:
    """For tasks with a finite training set: train beside test on a log step axis, and steps to grok."""
    finite = selected[selected["train_set_size"].notna()]
    curves = curves[curves["run"].isin(finite["run"])]
    if finite.empty or curves.empty or "train_accuracy" not in curves:
        return []
    grokked = finite.groupby(["setting", "task"]).agg(
        train_set_size=("train_set_size", "first"),
        steps_to_grok=("steps_to_grok", lambda s: describe(s.dropna(), digits=0, bounds=(0, math.inf)) + f", grokked {s.notna().sum()}/{len(s)}"),
        test_accuracy=("test_accuracy", describe),
    ).reset_index()  # fmt: skip
    return [
        Figure(figures.grokking_curves(curves, figure_dir / "grokking.png"),
               "Tasks with a finite training set: train (dashed) and test (solid) accuracy and loss against training step, log scales "
               "(line: mean over seeds; band: min–max)."),  # fmt: skip
        f"Steps to grok: the first evaluation step from which test accuracy stays at {GROKKED} or more to the end of the run, "
        f"{INTERVAL_NOTE} over the seeds that grokked; grokked: how many did.",
        grokked,
    ]


def curve_blocks(results: Results, selection: Selection, figure_dir: Path) -> list[Block]:
    curves = with_identity(results.curves, selection.selected)
    if curves.empty or "test_accuracy" not in curves:
        return []
    caption = "one line per setting at its chosen learning rate"
    return grokking_blocks(curves, selection.selected, figure_dir) + [
        Figure(figures.learning_curves(curves, "test_accuracy", "test accuracy", figure_dir / "curves_accuracy.png"),
               f"Test accuracy against training step, {caption}."),
        Figure(figures.learning_curves(curves, "test_loss", "test loss (nats)", figure_dir / "curves_loss.png", log_y=True),
               f"Test cross-entropy on scored positions against training step, {caption}."),
    ]  # fmt: skip


def slice_blocks(results: Results, selection: Selection, figure_dir: Path) -> list[Block]:
    slices = with_identity(results.slices, selection.selected)
    if slices.empty:
        return []
    per_run = figures.binned_slices(slices)
    if per_run.empty:
        return []
    return [
        "Test accuracy broken down by what the generator planted (for example induction's gap back to the earlier "
        "occurrence, or the copied string's length): per run, correct / scored at each value (values binned where there "
        "are many), then the mean over seeds.",
        Figure(figures.slice_accuracy(per_run, figure_dir / "slices.png"), "Test accuracy per slice value (band: 95% interval over seeds)."),
    ]


def analysis_sections(results: Results, selection: Selection, figure_dir: Path) -> list[Section]:
    sections = []
    for name, analysis in sorted(ANALYSES.items(), key=lambda item: (item[1].report_order, item[0])):
        rows = with_identity(results.analyses.get(name, pd.DataFrame()), selection.selected)
        if rows.empty:
            continue
        runs = selection.selected[selection.selected["run"].isin(rows["run"])]
        data = SectionData(name, rows, runs, figure_dir, lambda run, name=name: readable_tensors(results.job_dirs[run], name))
        sections.append((analysis.title, analysis().section(data)))
    return sections


def readable_tensors(job_dir: Path, name: str) -> dict:
    """An analysis's saved tensors, or none where the file is damaged (its figure is then left out)."""
    try:
        return read_tensors(job_dir, name)
    except Exception:  # safetensors raises its own error types for a damaged file
        log.warning("%s's tensors of %s cannot be read; its figure is left out", job_dir, name)
        return {}


def unfinished_blocks(selection: Selection, results: Results) -> list[Block]:
    runs = selection.runs
    others = pd.concat([runs[runs["status"] != "completed"], results.runs[results.runs["variant"].isna() | results.runs["task"].isna()]])
    if others.empty:
        return []
    columns = [c for c in ["run", "variant", "task", "seed", "status", "error"] if c in others]
    return ["Runs that are not in any table: failed (with their error), diverged (non-finite training loss), still "
            "running, killed (their process is gone), or unreadable.", others[columns].drop_duplicates("run")]  # fmt: skip


def provenance(results: Results) -> pd.DataFrame:
    environments = [r.get("environment") for r in results.records.values() if isinstance(r.get("environment"), dict)]
    first = environments[0] if environments else {}
    started = sorted(str(r["started_at"]) for r in results.records.values() if r.get("started_at"))
    rows = {
        "command": first.get("command", "—"),
        "git commit": ", ".join(sorted({str(e.get("git_commit")) + (" (dirty)" if e.get("git_dirty") else "") for e in environments})) or "—",
        "packages": ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items()) or "—",
        "machine": first.get("machine", "—"),
        "runs started": f"{started[0]} to {started[-1]}" if started else "—",
        "report written": f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} on {platform.node()}",
    }
    return pd.DataFrame({"": list(rows), "value": list(rows.values())})


def build_sections(results: Results, sweep_dirs: list[Path], figure_dir: Path, speed_file: Path | None) -> list[Section]:
    selection = select_runs(results.runs, tuple(results.protocol.get("select_on") or ()))
    overview, missing = overview_blocks(results, selection, sweep_dirs)
    throughput, contention = throughput_blocks(results, selection)
    points = with_difficulty_point(selection)
    stated = findings(points, with_identity(results.curves, selection.selected), selection.grid, selection.select_on, difficulty_columns(selection))
    leaderboard = mad_leaderboard(selection) if results.protocol.get("score") == "mad" else []
    sections: list[Section] = [("Leaderboard", leaderboard), ("Findings", [stated + contention] if stated or contention else []), ("Overview", overview)]
    if len(selection.selected):
        sections.append(("Summary", summary_blocks(selection, points, figure_dir)))
        sections.append(("Where each attention breaks", difficulty_blocks(selection, figure_dir)))
        sections.append(("Throughput", throughput))
        sections.append(("Learning curves", curve_blocks(results, selection, figure_dir)))
        sections.append(("Accuracy by slice", slice_blocks(results, selection, figure_dir)))
        sections += analysis_sections(results, selection, figure_dir)
    sections.append(("Speed", speed_blocks(speed_file, set(selection.runs["variant"].dropna()), figure_dir)))
    sections.append(("Runs that did not complete", unfinished_blocks(selection, results)))
    if missing:
        sections.append(("Missing jobs", ["Asked for by the sweep when it started, with no result yet:", pd.DataFrame({"job": missing})]))
    sections.append(("Provenance", [provenance(results)]))
    return [(title, blocks) for title, blocks in sections if blocks]


def accuracy_table(sweep_dirs: list[Path]) -> pd.DataFrame:
    """Setting x task test accuracy of the selected runs, for the line a sweep prints when it ends."""
    results = load_results(*sweep_dirs)
    selected = select_runs(results.runs, tuple(results.protocol.get("select_on") or ())).selected
    if selected.empty:
        return pd.DataFrame()
    table = selected.groupby(["setting", "task"])["test_accuracy"].agg(describe).unstack("task")
    table.columns.name, table.index.name = None, None
    return table


def write_tables(results: Results, out_dir: Path) -> None:
    tables = {"results": results.runs, "curves": results.curves, "slices": results.slices}
    tables.update({f"analysis_{name}": rows for name, rows in results.analyses.items()})
    for stem, table in tables.items():
        table.to_parquet(out_dir / f"{stem}.parquet", index=False)
        table.to_csv(out_dir / f"{stem}.csv", index=False)


def default_speed_file(sweep_dirs: list[Path]) -> Path | None:
    own = [Path(d) / SWEEP_SPEED_FILE for d in sweep_dirs if (Path(d) / SWEEP_SPEED_FILE).exists()]
    return own[0] if own else None


def write_report(sweep_dirs: Path | list[Path], out_dir: Path | None = None, speed_file: Path | None = None) -> Path:
    """Write the tables, figures, report.md and report.html for the sweeps; returns report.md.

    The report is built in a temporary directory beside out_dir and swapped in whole, so a report
    killed while it is written leaves the previous one intact and no half-written files."""
    sweep_dirs = [Path(d) for d in ([sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else sweep_dirs)]
    for sweep_dir in sweep_dirs:
        if not sweep_dir.is_dir():
            raise FileNotFoundError(f"no sweep directory at {sweep_dir}")
    out_dir = Path(out_dir or sweep_dirs[0] / "report").absolute()
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    (staging / "figures").mkdir(parents=True)
    try:
        results = load_results(*sweep_dirs)
        write_tables(results, staging)
        sections = build_sections(results, sweep_dirs, staging / "figures", speed_file or default_speed_file(sweep_dirs))
        title = "Sweep " + " + ".join(d.resolve().name for d in sweep_dirs)
        (staging / "report.html").write_text(html_page(title, sections))
        (staging / "report.md").write_text(markdown(title, sections, staging))
        swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "report.md"


def swap_in(staging: Path, out_dir: Path, attempts: int = 5) -> None:
    """Replace out_dir by staging: two renames, so out_dir is whole whenever it exists. Another
    process swapping its own report in at the same moment makes a rename fail; then try again."""
    retired = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old.tmp")
    for attempt in range(attempts):
        try:
            if out_dir.exists():
                os.replace(out_dir, retired)
            os.replace(staging, out_dir)
            break
        except OSError:
            if attempt == attempts - 1:
                raise
    shutil.rmtree(retired, ignore_errors=True)
