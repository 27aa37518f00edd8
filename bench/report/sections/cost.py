"""Where the time went: the job-seconds of the sweep by phase of the tuning protocol, and the share
spent past each run's base budget.

A run is *tuning* where its seed ran at every grid point of its setting and task (those choose the
point), *confirming* where it ran at the point they chose, *second look* where it ran at their runner-up
too, or past a grid edge that one sat on (the tuning sweeper's step 4), and plain where nothing was tuned. Its
*extension* is the share of its time past ``train.steps`` (steps_run beyond it, in proportion). A
job's seconds include its evaluations and analyses; a sweep's wall time is these over the jobs it
ran at once, plus what the machine gave to other work.
"""
from __future__ import annotations

import pandas as pd

from analyses import Block
from bench.report.protocol import tuning_grid
from bench.report.sections.base import ReportData, ReportSection

PHASES = ("tuning", "confirming", "second look", "untuned")


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
        tuning = group["seed"].map(lambda seed: everywhere.get(seed, False)).astype(bool)
        labels[group.index] = tuning.map({True: "tuning", False: "confirming"})
        if points[~tuning].nunique() > 1:  # the other seeds ran at a second point too: where the tuning seeds did not choose
            first = tuning_grid(group[tuning], ["setting", "task"], select_on)
            first_point = first.loc[first["chosen"], select_on].astype(str).agg("|".join, axis=1)
            if not first_point.empty:  # empty where every tuning job failed
                labels[group.index[~tuning & (points != first_point.iloc[0])]] = "second look"
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
            "at the point the tuning seeds chose; second look: the other seeds at the runner-up, where they disagreed at the "
            "first choice (and past a grid edge it sat on); hours past base budget: the share of each run's time beyond train.steps, where a run "
            "still improving had its budget extended.",
            table.round({"job_hours": 2, "hours_past_base_budget": 2, "share_of_job_time": 3}),
        ]
