"""Building a report: a dispatcher over the registered report sections (bench.report.sections),
and the files it writes.

    report.md, report.html          the same report; the HTML is one self-contained file, which
                                    alone holds the figures (the Markdown links to each)
    results.parquet                 one row per run: identity, status, metrics, flattened config
    curves / slices                 one row per run and evaluation step / test-set slice value
    analysis_<name>                 one row per run and analysis row
    speed.json                      the speed suite's timings its speed section read, if any

Every section rests on the same runs (bench.report.protocol) and reports test-set numbers. A
section that fails is named in the report, and the others are still written.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
from pathlib import Path

import pandas as pd

from bench.core.results import process_alive
from bench.report.protocol import select_runs
from bench.report.records import Results, load_results, load_tables, with_baseline
from bench.report.render import Section, html_page, markdown
from bench.report.sections import SECTIONS, ReportData
from bench.report.sections.analyses import cross_run_tables
from bench.report.sections.speed import SWEEP_SPEED_FILE, default_speed_file
from plugin.statistics import describe

log = logging.getLogger(__name__)


def build_sections(data: ReportData) -> list[Section]:
    """Every registered section's (heading, blocks), in order, those with blocks only."""
    sections: list[Section] = []
    for name, section in sorted(SECTIONS.items(), key=lambda item: (item[1].order, item[0])):
        try:
            sections += section().render(data)
        except Exception as error:  # one broken section (a user's, say) must not cost the whole report
            log.exception("report section %s failed", name)
            sections.append((section.title, [f"This section could not be built: {type(error).__name__}: {error}"]))
    return [(title, blocks) for title, blocks in sections if blocks]


def accuracy_table(sweep_dirs: list[Path]) -> pd.DataFrame:
    """Setting x task test accuracy of the selected runs, for the line a sweep prints when it ends."""
    selected = select_runs(load_results(*sweep_dirs).runs).selected
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


# Written into every report directory: the mark that lets a later build replace it.
REPORT_MARK = ".attention-bench-report"
# What a report directory holds (a report from before the mark is known by these alone).
REPORT_ENTRIES = ("report.md", "report.html", "figures", "*.csv", "*.parquet", SWEEP_SPEED_FILE, REPORT_MARK)


class UnsafeOutput(ValueError):
    """--out names something a report may not replace, or a place it cannot write."""


def check_output(out_dir: Path, sweep_dirs: list[Path]) -> None:
    """Raise UnsafeOutput unless out_dir is absent, an empty directory, or a report this command
    wrote: a report replaces its directory whole, and must never remove what it did not write."""
    for sweep_dir in sweep_dirs:
        if out_dir == sweep_dir.absolute() or out_dir in sweep_dir.absolute().parents:
            raise UnsafeOutput(f"--out {out_dir} would replace the sweep {sweep_dir} it reads; name a new directory (default: <sweep_dir>/report)")
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise UnsafeOutput(f"--out {out_dir} is a file or a link, not a report directory; name a new directory")
    entries = list(out_dir.iterdir())
    is_report = (out_dir / REPORT_MARK).is_file() or (
        {"report.md", "report.html"} <= {entry.name for entry in entries}
        and all(any(entry.match(pattern) for pattern in REPORT_ENTRIES) for entry in entries)
    )
    if entries and not is_report:
        raise UnsafeOutput(f"--out {out_dir} holds files that no report wrote ({entries[0].name}, ...); name a new directory or an earlier report's")


def write_report(sweep_dirs: Path | list[Path], out_dir: Path | None = None, speed_file: Path | None = None,
                 baseline: Path | None = None) -> Path:
    """Write the tables, figures, report.md and report.html for the sweeps (beside the runs of the
    committed report `baseline`, if given: bench.report.records.with_baseline); returns report.md.
    With no sweeps, the baseline's runs alone, re-rendered by this version's sections (into the
    baseline's own directory unless out_dir says otherwise).

    The report is built in a temporary directory beside out_dir and swapped in whole, so a report
    killed while it is written leaves the previous one intact and no half-written files. out_dir is
    replaced only where check_output allows it."""
    sweep_dirs = [Path(d) for d in ([sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else sweep_dirs)]
    for sweep_dir in sweep_dirs:
        if not sweep_dir.is_dir():
            raise FileNotFoundError(f"no sweep directory at {sweep_dir}")
    if not sweep_dirs and baseline is None:
        raise ValueError("a report needs a sweep directory, or a baseline report to re-render")
    out_dir = Path(os.path.abspath(out_dir or (sweep_dirs[0] / "report" if sweep_dirs else baseline)))
    check_output(out_dir, sweep_dirs)
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    remove_abandoned_staging(out_dir)
    try:
        (staging / "figures").mkdir(parents=True)
    except OSError as error:  # a file where a folder must be, no permission, a full disk
        raise UnsafeOutput(f"--out {out_dir}: cannot write beside it ({error.strerror}: {error.filename})") from error
    try:
        (staging / REPORT_MARK).write_text("written by python -m bench.report; a later report may replace this directory\n")
        if not sweep_dirs:
            results = load_tables(baseline)
        else:
            results = load_results(*sweep_dirs)
            if baseline is not None:
                results = with_baseline(results, baseline)
        speed_file = speed_file or default_speed_file(sweep_dirs if sweep_dirs else [baseline])
        if speed_file is not None:  # kept with the tables, so that the report re-rendered from them keeps its speed section
            shutil.copyfile(speed_file, staging / SWEEP_SPEED_FILE)
        data = ReportData(results, sweep_dirs, staging / "figures", speed_file)
        results.analyses.update(cross_run_tables(data))
        write_tables(results, staging)
        sections = build_sections(data)
        title = report_title(sweep_dirs, baseline)
        (staging / "report.html").write_text(html_page(title, sections))
        (staging / "report.md").write_text(markdown(title, sections))
        shutil.rmtree(staging / "figures")  # each is in report.html
        swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "report.md"


def report_title(sweep_dirs: list[Path], baseline: Path | None) -> str:
    if not sweep_dirs:
        return f"Report {Path(baseline).resolve().name}, its saved runs re-rendered"
    return "Sweep " + " + ".join(d.resolve().name for d in sweep_dirs) + (f", beside the baseline {Path(baseline).name}" if baseline else "")


def remove_abandoned_staging(out_dir: Path) -> None:
    """Remove the temporary directories of builds of this report whose process has ended; those of
    a build still running (its pid in the name) are left to it, so two builds at once both finish."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
        pid = stale.name.removeprefix(f".{out_dir.name}.").split(".")[0]
        if not (pid.isdigit() and process_alive(int(pid), socket.gethostname())):
            shutil.rmtree(stale, ignore_errors=True)


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
