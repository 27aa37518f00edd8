"""Where the time went: the job-seconds of the sweep by phase of the tuning protocol, and the share
spent past each run's base budget.

A run is *tuning* where its seed ran at every grid point of its setting and task (those choose the
point), *confirming* where it ran at the chosen point alone, and plain where nothing was tuned. Its
*extension* is the share of its time past ``train.steps`` (steps_run beyond it, in proportion). A
job's seconds include its evaluations and analyses; a sweep's wall time is these over the jobs it
ran at once, plus what the machine gave to other work.
"""
from __future__ import annotations

import pandas as pd

from analyses import Block
from bench.report.sections.base import ReportData, ReportSection

PHASES = ("tuning", "confirming", "untuned")


def phases(runs: pd.DataFrame, select_on: list[str]) -> pd.Series:
    """Each run's phase (module docstring)."""
    labels = pd.Series("untuned", index=runs.index)
    if not select_on:
        return labels
    for _, group in runs.groupby(["setting", "task"]):
        points = group[select_on].astype(str).agg("|".join, axis=1)
        if points.nunique() < 2:
            continue
        everywhere = group.assign(point=points).groupby("seed")["point"].nunique() == points.nunique()
        labels[group.index] = group["seed"].map(lambda seed: "tuning" if everywhere.get(seed, False) else "confirming")
    return labels


class Cost(ReportSection):
    name = "cost"
    title = "Where the time went"
    order = 125
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        runs = data.selection.runs
        if runs.empty or "wall_time_s" not in runs or runs["wall_time_s"].isna().all():
            return []
        seconds = pd.to_numeric(runs["wall_time_s"], errors="coerce").fillna(0.0)
        steps = pd.to_numeric(runs["steps_run"], errors="coerce")
        base = pd.to_numeric(runs["train.steps"], errors="coerce") if "train.steps" in runs else steps
        past_base = (seconds * ((steps - base).clip(lower=0) / steps)).fillna(0.0)
        frame = pd.DataFrame({"phase": phases(runs, data.selection.select_on), "seconds": seconds, "extension": past_base,
                              "extended": steps > base})  # fmt: skip
        table = (
            frame.groupby("phase")
            .agg(jobs=("seconds", "size"), job_hours=("seconds", lambda s: s.sum() / 3600), extended_jobs=("extended", "sum"),
                 hours_past_base_budget=("extension", lambda s: s.sum() / 3600))
            .reindex([phase for phase in PHASES if phase in set(frame["phase"])])
            .reset_index()
        )  # fmt: skip
        table["share_of_job_time"] = table["job_hours"] / max(table["job_hours"].sum(), 1e-12)
        total = seconds.sum() / 3600
        return [
            f"{len(runs)} jobs, {total:.2f} job-hours (training, evaluations and analyses; the wall time is about this over the "
            "jobs run at once). Tuning: runs of a seed at every grid point of its setting × task; confirming: the other seeds "
            "at the chosen point; hours past base budget: the share of each run's time beyond train.steps, where a run "
            "still improving had its budget extended.",
            table.round({"job_hours": 2, "hours_past_base_budget": 2, "share_of_job_time": 3}),
        ]
