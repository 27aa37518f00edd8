"""Provenance: the command, commits, packages and machine the runs came from, and when."""
from __future__ import annotations

import platform
from datetime import datetime, timezone

import pandas as pd

from analyses import Block
from bench.report.sections.base import ReportData, ReportSection


def values(runs: pd.DataFrame, column: str) -> list[str]:
    return sorted({str(value) for value in runs[column].dropna()}) if column in runs else []


class Provenance(ReportSection):
    name = "provenance"
    title = "Provenance"
    order = 130
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        runs = data.results.runs
        started = values(runs, "started_at")
        commits = runs.reindex(columns=["git_commit", "git_dirty"]).dropna(subset=["git_commit"]).drop_duplicates("git_commit")
        rows = {
            "command": (values(runs, "command") or ["—"])[0],
            "git commit": ", ".join(sorted({f"{c}{' (dirty)' if d is True else ''}" for c, d in
                                            zip(commits["git_commit"].astype(str), commits["git_dirty"])})) or "—",
            "packages": (values(runs, "versions") or ["—"])[0],
            "machine": (values(runs, "machine") or ["—"])[0],
            "runs started": f"{started[0]} to {started[-1]}" if started else "—",
            "report written": f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} on {platform.node()}",
        }  # fmt: skip
        return [pd.DataFrame({"": list(rows), "value": list(rows.values())})]
