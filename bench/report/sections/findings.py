"""Findings in words, computed from the selected runs, each with the number behind it: who wins
each task, who stays at chance or does not learn, which comparisons the seeds cannot resolve (and
how many seeds would), how much the selection grid mattered, and what the references and controls
show. Constructed variants (not trained) and controls are never ranked with the models.
"""
from __future__ import annotations

import math

import pandas as pd

from analyses import Block
from bench.report.protocol import BREAK, FLAT_LOSS, TIE, at_chance, contention_note, option_text, roles, seeds_to_resolve
from bench.report.sections.base import ReportData, ReportSection
from plugin.statistics import describe, interval


class Findings(ReportSection):
    name = "findings"
    title = "Findings"
    order = 20
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        stated = findings(data.points, data.curves, data.selection.grid, data.selection.select_on, data.axes) + contention_note(data.curves)
        return [stated] if stated else []


def findings(selected: pd.DataFrame, curves: pd.DataFrame, grid: pd.DataFrame, select_on: list[str], axes: dict[str, list[str]]) -> list[str]:
    """selected carries `model` and `point` (bench.report.protocol.with_difficulty_point): models
    are ranked against each other only at the same point of a task's difficulty axes (axes, per task)."""
    if selected.empty:
        return []
    selected = selected.assign(role=roles(selected))
    sentences: list[str] = []
    for task, runs in selected.groupby("task"):
        for point in runs.sort_values(axes.get(task, []))["point"].unique():  # in the axes' numeric order
            at_point = runs[runs["point"] == point]
            sentences += task_findings(f"{task} at {point}" if point else task, at_point.assign(setting=at_point["model"]))
        sentences += where_it_breaks(task, runs[runs["role"] == "model"], axes.get(task, []))
    sentences += flat_or_chance(selected, curves)
    sentences += grid_sensitivity(grid, select_on)
    return sentences


def task_findings(task: str, runs: pd.DataFrame) -> list[str]:
    sentences = []
    models = runs[runs["role"] == "model"]
    means = models.groupby("setting")["test_accuracy"].mean().sort_values(ascending=False)
    chance = runs["chance_accuracy"].mean()
    if len(means):
        best = means.index[0]
        accuracy = describe(models[models["setting"] == best]["test_accuracy"])
        if at_chance(means.iloc[0], chance):
            sentences.append(f"{task}: no model beats chance ({chance:.3f}); the best is {best} at {accuracy}.")
        else:
            tied = [setting for setting in means.index if means.iloc[0] - means[setting] < TIE]
            others = [setting for setting in means.index if setting not in tied]
            if len(tied) > 1:
                sentences.append(f"{task}: {', '.join(tied)} tie for the lead at {means.iloc[0]:.3f} (mean test accuracy; "
                                 f"seeds: {', '.join(str(len(models[models['setting'] == s])) for s in tied)}).")  # fmt: skip
            else:
                runner_up = f", ahead of {others[0]} at {describe(models[models['setting'] == others[0]]['test_accuracy'])}" if others else ""
                sentences.append(f"{task}: {best} leads with test accuracy {accuracy}{runner_up}.")
            for other in others:
                sentences += unresolved(task, best, other, models)
    for role in ("constructed", "control"):
        for setting, group in runs[runs["role"] == role].groupby("setting"):
            label = "constructed, not trained: a reference, not ranked" if role == "constructed" else "a control, not ranked"
            sentences.append(f"{task}: {setting} ({label}) reaches {describe(group['test_accuracy'])}.")
    return sentences


def unresolved(task: str, best: str, other: str, models: pd.DataFrame) -> list[str]:
    first, second = (models[models["setting"] == s]["test_accuracy"] for s in (best, other))
    a, b = interval(first), interval(second)
    if a.n < 2 or b.n < 2 or a.low > b.high:
        return []
    difference = a.mean - b.mean
    spread = math.sqrt((first.var(ddof=1) * (a.n - 1) + second.var(ddof=1) * (b.n - 1)) / (a.n + b.n - 2))
    needed = seeds_to_resolve(difference, spread)
    resolve = f"about {needed} seeds each would resolve a difference this size" if needed else "the difference is too small to matter"
    return [f"{task}: {best} vs {other} is unresolved: difference {difference:.3f}, pooled spread (sd) {spread:.3f}, "
            f"n = {a.n} and {b.n}; {resolve}."]  # fmt: skip


def where_it_breaks(task: str, models: pd.DataFrame, axes: list[str]) -> list[str]:
    """Per model and difficulty axis, mean test accuracy along the axis with the other axes held
    fixed, and the values at which it falls below BREAK."""
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
                broken = [option_text(value) for value, mean in means.items() if mean < BREAK]
                verdict = ("holds throughout" if not broken else "below throughout" if len(broken) == len(means)
                           else f"below at {', '.join(broken)}")  # fmt: skip
                held = ", ".join(f"{other.removeprefix('task.')}={option_text(value)}" for other, value in zip(others, fixed))
                series = " → ".join(f"{mean:.3f} ({option_text(value)})" for value, mean in means.items())
                lines.append(f"{series}{f' at {held}' if held else ''}: {verdict}")
            if lines:
                sentences.append(f"{task}: {model} along {axis.removeprefix('task.')} (below {BREAK} marks where it breaks): {'; '.join(lines)}.")
    return sentences


def flat_or_chance(selected: pd.DataFrame, curves: pd.DataFrame) -> list[str]:
    sentences = []
    for (setting, task), group in selected[selected["role"] != "constructed"].groupby(["setting", "task"]):
        chance = group["chance_accuracy"].mean()
        accuracy = group["test_accuracy"].mean()
        losses = curves[curves["run"].isin(group["run"])] if len(curves) and "test_loss" in curves else pd.DataFrame()
        trend, flat = "", False
        if len(losses):
            first = losses.sort_values("step").groupby("run")["test_loss"].first()
            last = losses.sort_values("step").groupby("run")["test_loss"].last()
            drop = ((first - last) / first).mean()
            flat = abs(drop) < FLAT_LOSS
            moved = "barely moved" if flat else "rose" if drop < 0 else ""
            trend = f"; its test loss {moved} ({first.mean():.2f} → {last.mean():.2f}{', flat' if flat else ''})" if moved else ""
        if at_chance(accuracy, chance) or flat:
            state = "stays at chance" if at_chance(accuracy, chance) else "does not learn"
            sentences.append(f"{setting} {state} on {task}: test accuracy {accuracy:.3f} against chance {chance:.3f}{trend}.")
    return sentences


def grid_sensitivity(grid: pd.DataFrame, select_on: list[str]) -> list[str]:
    sentences = []
    for (setting, task), points in grid.groupby(["setting", "task"]):
        if len(points) < 2:
            continue
        chosen = points[points["chosen"]].iloc[0]
        worst = points["validation_accuracy"].min()
        point = ", ".join(f"{key}={option_text(chosen[key])}" for key in select_on)
        drop = chosen["validation_accuracy"] - worst
        sensitivity = "sensitive" if drop > 0.1 else "insensitive"
        sentences.append(f"{setting} on {task}: {point} chosen on validation ({chosen['validation_accuracy']:.3f}); across the "
                         f"{len(points)} grid points validation accuracy falls by up to {drop:.3f} ({sensitivity}).")  # fmt: skip
    return sentences
