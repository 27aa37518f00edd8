"""Missing jobs: asked for by a sweep when it started (its jobs.json), with no result yet."""
from __future__ import annotations

import pandas as pd

from analyses import Block
from bench.report.records import missing_jobs
from bench.report.sections.base import ReportData, ReportSection


class MissingJobs(ReportSection):
    name = "missing"
    title = "Missing jobs"
    order = 120
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        lost = [job for _, jobs in missing_jobs(data.results, data.sweep_dirs).values() for job in jobs]
        return ["Asked for by the sweep when it started, with no result yet:", pd.DataFrame({"job": lost})] if lost else []
