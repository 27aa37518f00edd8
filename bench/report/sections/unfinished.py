"""Runs that did not complete: failed (with their error), diverged, still running, killed or unreadable."""
from __future__ import annotations

import pandas as pd

from analyses import Block
from bench.report.sections.base import ReportData, ReportSection


class Unfinished(ReportSection):
    name = "unfinished"
    title = "Runs that did not complete"
    order = 110
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        runs, all_runs = data.selection.runs, data.results.runs
        others = pd.concat([runs[runs["status"] != "completed"], all_runs[all_runs["variant"].isna() | all_runs["task"].isna()]])
        if others.empty:
            return []
        columns = [c for c in ["run", "variant", "task", "seed", "status", "error"] if c in others]
        return ["Runs that are not in any table: failed (with their error), diverged (non-finite training loss), still "
                "running, killed (their process is gone), or unreadable.", others[columns].drop_duplicates("run")]  # fmt: skip
