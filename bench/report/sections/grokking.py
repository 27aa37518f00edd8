"""Grokking: for runs that trained on past memorising a finite training set, train beside test on a
log step axis, and the steps to grok.

A run can grok only if training goes on after it has fit its training set: a finite training set
(``train_set_size``), and no early stop on the target (``train.target_accuracy`` null, as in the
grokking experiment). A run that stops at the target (MAD's, with their finite pools) ends before
any delayed generalisation could show, so it gets no grokking table.
"""
from __future__ import annotations

import math

import pandas as pd

from analyses import Block, Figure
from bench.report import figures
from bench.report.records import GROKKED, GROKKING_WINDOW
from bench.report.sections.base import ReportData, ReportSection
from plugin.statistics import INTERVAL_NOTE, describe


def trained_past_memorising(selected: pd.DataFrame) -> pd.DataFrame:
    no_early_stop = selected["train.target_accuracy"].isna() if "train.target_accuracy" in selected else False
    return selected[selected["train_set_size"].notna() & no_early_stop]


class Grokking(ReportSection):
    name = "grokking"
    title = "Grokking"
    order = 65

    def blocks(self, data: ReportData) -> list[Block]:
        finite = trained_past_memorising(data.selection.selected)
        curves = data.curves[data.curves["run"].isin(finite["run"])] if len(data.curves) else data.curves
        if finite.empty or curves.empty or "train_accuracy" not in curves:
            return []
        grokked = finite.groupby(["setting", "task"]).agg(
            train_set_size=("train_set_size", "first"),
            steps_to_grok=("steps_to_grok", lambda s: describe(s.dropna(), digits=0, bounds=(0, math.inf)) + f", grokked {s.notna().sum()}/{len(s)}"),
            test_accuracy=("test_accuracy", describe),
        ).reset_index()  # fmt: skip
        return [
            Figure(figures.grokking_curves(curves, data.figure_dir / "grokking.png"),
                   "Runs trained past memorising a finite training set: train (dashed) and test (solid) accuracy and loss "
                   "against training step, log scales (line: mean over seeds; band: min–max)."),  # fmt: skip
            f"Steps to grok: the first evaluation step from which test accuracy, as a centred running median over "
            f"{GROKKING_WINDOW} evaluations (so that no single evaluation, up or down, sets it), stays at {GROKKED} or more "
            f"to the end of the run; {INTERVAL_NOTE} over the seeds that grokked; grokked: how many did.",
            grokked,
        ]
