"""Throughput: training tokens/s from the training steps alone (evaluations excluded), its spread
over the run's intervals, and the machine's load while it trained."""
from __future__ import annotations

from analyses import Block
from bench.report.protocol import CONTENDED_SHARE, contended
from bench.report.sections.base import ReportData, ReportSection


class Throughput(ReportSection):
    name = "throughput"
    title = "Throughput"
    order = 60

    def blocks(self, data: ReportData) -> list[Block]:
        curves = data.curves
        if curves.empty or "tokens_per_s" not in curves or curves["tokens_per_s"].isna().all():
            return []
        per_run = contended(curves)
        table = (
            curves.dropna(subset=["tokens_per_s"]).groupby(["setting", "task"])["tokens_per_s"]
            .agg(tokens_per_s="median", q1=lambda v: v.quantile(0.25), q3=lambda v: v.quantile(0.75))
            .join(per_run.groupby(["setting", "task"]).agg(cpu_share=("share", "median"), load_1min=("load", "median"),
                                                            contended_runs=("contended", lambda c: f"{int(c.sum())}/{len(c)}")))
            .reset_index()
            .round({"tokens_per_s": 0, "q1": 0, "q3": 0, "cpu_share": 2, "load_1min": 2})
        )  # fmt: skip
        return [
            "Training throughput from the training steps alone (evaluations excluded): median tokens/s over every "
            "evaluation interval of every seed, with its interquartile range (q1, q3); cpu_share is the share of the asked-for "
            f"cores the process got, load_1min the machine's load average while it trained; a run below {CONTENDED_SHARE:.0%} "
            "counts as contended. Compare variants' speed in the speed section, measured alone; these are whole-model, "
            "whole-run figures.",
            table,
        ]
