"""Building a report: a dispatcher over the registered report sections (bench.report.sections),
and the files it writes.

    report.md, report.html          the same report; the HTML is one self-contained file
    figures/*.png                   every figure
    results.parquet / .csv          one row per run: identity, status, metrics, flattened config
    curves / slices                 one row per run and evaluation step / test-set slice value
    analysis_<name>                 one row per run and analysis row

Every section rests on the same runs (bench.report.protocol) and reports test-set numbers. A
section that fails is named in the report, and the others are still written.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from bench.report.protocol import select_runs
from bench.report.records import Results, load_results
from bench.report.render import Section, html_page, markdown
from bench.report.sections import SECTIONS, ReportData
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
        table.to_csv(out_dir / f"{stem}.csv", index=False)


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
        sections = build_sections(ReportData(results, sweep_dirs, staging / "figures", speed_file))
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
