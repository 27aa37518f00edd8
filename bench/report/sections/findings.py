"""Findings in words: a handful of sentences over the verdict table (bench.report.verdicts), each
with its number. Per task: which models solve it, which do not (and why), and the comparison that
matters between the best two by the one statistical rule; where a model breaks along a difficulty
axis; what the control shows; and a busy machine. Every other pairwise comparison is in the
appendix ("Comparisons"), never here.
"""
from __future__ import annotations

import pandas as pd

from analyses import Block
from bench.report.protocol import BREAK, contention_note, option_text
from bench.report.sections.base import ReportData, ReportSection
from bench.report.verdicts import AT_CHANCE, CONTROL, NOT_ESTABLISHED, PARTIAL, SOLVES


class Findings(ReportSection):
    name = "findings"
    title = "Findings"
    order = 20
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        stated = findings(data.points, data.verdicts, data.pairs, data.axes) + contention_note(data.curves)
        return [stated] if stated else []


def findings(points: pd.DataFrame, verdicts: pd.DataFrame, pairs: pd.DataFrame, axes: dict[str, list[str]]) -> list[str]:
    """A sentence per task at a single difficulty point (a ladder's points are the verdict table's
    and where_it_breaks'), then where each model breaks along a ladder."""
    if points.empty:
        return []
    sentences: list[str] = []
    for task, at_task in verdicts.groupby("task", sort=False):
        if task not in axes:
            sentences += task_sentence(task, at_task, pairs[pairs["task"] == task] if len(pairs) else pairs)
    models = points[points["role"] == "model"]
    unsettled = verdicts[verdicts["verdict"] == NOT_ESTABLISHED]
    for task, runs in models.groupby("task"):
        open_points = {(row.model, row.point) for row in unsettled[unsettled["task"] == task].itertuples()}
        sentences += where_it_breaks(task, runs, axes.get(task, []), open_points)
    return sentences


def named(verdicts: pd.DataFrame, label: str) -> str:
    rows = verdicts[verdicts["verdict"] == label].sort_values("test_accuracy", ascending=False)
    def detail(row) -> str:
        if label == SOLVES:
            return f"{row.test_accuracy:.3f}"
        within = f" within {row.steps:.0f} steps" if label in (AT_CHANCE, CONTROL, PARTIAL) and row.steps == row.steps else ""
        return f"{row.test_accuracy:.3f}, {row.reason}{within}"

    return ", ".join(f"{row.model} ({detail(row)})" for row in rows.itertuples())


def task_sentence(task: str, verdicts: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    models = verdicts[verdicts["role"] == "model"]
    parts = [f"{label}: {named(models, label)}" for label in (SOLVES, PARTIAL, NOT_ESTABLISHED, CONTROL, AT_CHANCE) if (models["verdict"] == label).any()]
    sentence = f"{task}: " + "; ".join(parts) + "."
    controls = verdicts[verdicts["role"] == "control"]
    for row in controls.itertuples():
        sentence += f" The control {row.model} reaches {row.test_accuracy:.3f} ({row.verdict})."
    ranked = models.sort_values("test_accuracy", ascending=False)["model"].tolist()
    if len(ranked) >= 2 and len(pairs):
        lead = pairs[(pairs["first"] == ranked[0]) & (pairs["second"] == ranked[1])]
        if len(lead):
            row = lead.iloc[0]
            outcome = "resolved" if row["resolved"] else "not resolved"
            sentence += f" {ranked[0]} vs {ranked[1]} on {row['measure']}: {row['summary']} ({outcome})."
    return [sentence]


def where_it_breaks(task: str, models: pd.DataFrame, axes: list[str], unsettled: set[tuple[str, str]] = frozenset()) -> list[str]:
    """Per model and difficulty axis, mean test accuracy along the axis with the other axes held
    fixed, and the values at which it falls below BREAK; a point whose verdict is not established
    (unsettled: (model, point) pairs) is marked so, and never counted as where the model breaks."""
    sentences = []
    for model, runs in models.groupby("model"):
        for axis in axes:
            others = [other for other in axes if other != axis]
            panels = runs.groupby(others, dropna=False) if others else [((), runs)]
            lines = []
            for fixed, panel in panels:
                means = panel.groupby(axis)["test_accuracy"].mean().sort_index()
                if len(means) < 2:
                    continue
                open_at = {value for value, rows in panel.groupby(axis) if any((model, point) in unsettled for point in rows["point"])}
                broken = [option_text(value) for value, mean in means.items() if mean < BREAK and value not in open_at]
                settled = len(means) - len(open_at)
                verdict = ("not established throughout" if not settled else "holds throughout" if not broken and not open_at
                           else "holds wherever established" if not broken else "below throughout" if len(broken) == settled
                           else f"below at {', '.join(broken)}")  # fmt: skip
                held = ", ".join(f"{other.removeprefix('task.')}={option_text(value)}" for other, value in zip(others, fixed))
                series = " → ".join(f"{mean:.3f}{' (not established)' if value in open_at else ''} ({option_text(value)})" for value, mean in means.items())
                lines.append(f"{series}{f' at {held}' if held else ''}: {verdict}")
            if lines:
                sentences.append(f"{task}: {model} along {axis.removeprefix('task.')} (below {BREAK} marks where it breaks): {'; '.join(lines)}.")
    return sentences
