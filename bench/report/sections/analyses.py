"""Every analysis's own section, from its stored rows, under the analysis's title and in its
``report_order`` (on the same scale as the sections' ``order``)."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from analyses import ANALYSES, Block, SectionData
from bench.core.measure import read_tensors
from bench.report.protocol import with_identity
from bench.report.sections.base import ReportData, ReportSection

log = logging.getLogger(__name__)


def readable_tensors(job_dir: Path | None, name: str) -> dict:
    """An analysis's saved tensors, or none where there is no job directory (a report rebuilt from its
    tables) or the file is damaged (its figure is then left out)."""
    if job_dir is None:
        return {}
    try:
        return read_tensors(job_dir, name)
    except Exception:  # safetensors raises its own error types for a damaged file
        log.warning("%s's tensors of %s cannot be read; its figure is left out", job_dir, name)
        return {}


def section_data(data: ReportData, name: str) -> SectionData:
    """What analysis `name` gets to write its section: its rows and those of the others, of the selected runs."""
    selected, job_dirs = data.selection.selected, data.results.job_dirs

    def rows_of(other: str) -> pd.DataFrame:
        return with_identity(data.results.analyses.get(other, pd.DataFrame()), selected)

    rows = rows_of(name)
    runs = selected[selected["run"].isin(rows["run"])] if len(rows) else selected.iloc[:0]
    return SectionData(name, rows, runs, data.figure_dir, lambda run: readable_tensors(job_dirs.get(run), name), rows_of, selected)


def cross_run_tables(data: ReportData) -> dict[str, pd.DataFrame]:
    """Each analysis's rows that relate runs to each other (Analysis.cross_run_rows), as the tables
    `<name>.across` that a report saves with its own."""
    if data.selection.selected.empty:
        return {}
    tables = {}
    for name, analysis in ANALYSES.items():
        section = section_data(data, name)
        if len(section.rows):
            rows = analysis().cross_run_rows(section)
            if rows:
                tables[f"{name}.across"] = pd.DataFrame(rows)
    return tables


class AnalysisSections(ReportSection):
    name = "analyses"
    title = "Analyses"
    order = 90

    def render(self, data: ReportData) -> list[tuple[str, list[Block]]]:
        if data.selection.selected.empty:
            return []
        sections = []
        for name, analysis in sorted(ANALYSES.items(), key=lambda item: (item[1].report_order, item[0])):
            section = section_data(data, name)
            if len(section.rows):
                sections.append((analysis.title, analysis().section(section)))
        return sections
