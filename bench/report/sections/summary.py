"""Summary: test accuracy of every setting x task (per difficulty point where a sweep varied one),
with the detail behind it, and the selection grid where one was swept."""
from __future__ import annotations

import pandas as pd

from analyses import Block, Figure
from bench.report.protocol import roles, swept_axes
from bench.report.sections.base import ReportData, ReportSection
from bench.report.verdicts import run_chance
from plugin.plotting import bars_with_points
from plugin.statistics import INTERVAL_NOTE, describe


def reached(runs: pd.DataFrame) -> str:
    """'850 (4/5)': the median step over the seeds that reached the target (reached / seeds); 'no
    target set' where the runs trained without one (train.target_accuracy null, as grokking's do)."""
    if "train.target_accuracy" in runs and runs["train.target_accuracy"].isna().all():
        return "no target set"
    hits = runs["steps_to_target"].dropna()
    median = f"{hits.median():.0f}" if len(hits) else "—"
    return f"{median} ({len(hits)}/{len(runs)})"


def budget_statuses(runs: pd.DataFrame) -> str:
    """'3 reached target, 2 converged (1 extended)'; '—' for records from before budgets were kept."""
    counts = runs["budget_status"].dropna().value_counts()
    extended = int((pd.to_numeric(runs["budget_extensions"], errors="coerce") > 0).sum()) if "budget_extensions" in runs else 0
    text = ", ".join(f"{n} {status}" for status, n in counts.items()) or "—"
    return f"{text} ({extended} extended)" if extended else text


class Summary(ReportSection):
    name = "summary"
    title = "Summary"
    order = 40

    def blocks(self, data: ReportData) -> list[Block]:
        selection, points = data.selection, data.points
        selected = selection.selected.assign(role=roles(selection.selected))
        if points["point"].ne("").any():  # a difficulty ladder: one row per task x point, one column per model
            points = points.assign(model=points["model"].where(selected["role"] == "model", points["model"] + " (" + selected["role"] + ")"))
            order = points.sort_values(["task", *swept_axes(selection)])
            accuracy = points.groupby(["task", "point", "model"], sort=False)["test_accuracy"].agg(describe).unstack("model")
            accuracy = accuracy.reindex(pd.MultiIndex.from_frame(order[["task", "point"]].drop_duplicates())).reset_index()
        else:
            accuracy = selected.groupby(["setting", "role", "task"])["test_accuracy"].agg(describe).unstack("task").reset_index()
        accuracy.columns.name = None
        selected = selected.assign(chance=run_chance(selected))
        detail = (
            selected.groupby(["setting", "task"])
            .agg(test_accuracy=("test_accuracy", describe), exact_match=("test_exact_match", describe),
                 validation_accuracy=("validation_accuracy", describe),
                 chance=("chance", "mean"), parameters=("n_params", "first"),
                 **{key: (key, "first") for key in selection.select_on})
            .reset_index()
            .round({"chance": 3})
        )  # fmt: skip
        per_group = selected.groupby(["setting", "task"])
        ends = pd.concat([per_group.apply(reached, include_groups=False).rename("steps_to_target"),
                          per_group.apply(budget_statuses, include_groups=False).rename("budget")], axis=1).reset_index()  # fmt: skip
        detail = detail.merge(ends, on=["setting", "task"])
        figure = bars_with_points(selected.assign(metric="test accuracy"), "test_accuracy", col="task", row="metric",
                                  value_label="test accuracy", path=data.figure_dir / "summary.png")  # fmt: skip
        blocks: list[Block] = [
            f"Test accuracy on scored positions, {INTERVAL_NOTE}. Role: model (trained and ranked), constructed (weights "
            "set by hand, a reference) or control (shows what a task needs):",
            accuracy,
            Figure(figure, "Test accuracy per setting: bar, mean over seeds with its 95% interval; dots, seeds."),
            "Exact match: share of test sequences with every scored token right. Validation accuracy: the set that chose "
            "the learning rate and the early stop. Steps to target: median step at which test accuracy first reached the "
            "target, over the seeds that reached it (reached / seeds). Chance: a uniform guess among the candidate answers "
            "in the context, what a model without the ability the task tests can still reach (each task's docstring; mean over "
            "the seeds' test sets). Budget: how the seeds' "
            "training ended (reached target, converged, still improving at the stated maximum).",
            detail,
        ]
        if (selection.grid.groupby(["setting", "task"]).size() > 1).any():
            grid = selection.grid.round({"validation_accuracy": 3, "validation_loss": 3}).assign(
                all_seeds_validation_accuracy=lambda t: t["all_seeds_validation_accuracy"].map(lambda v: "—" if pd.isna(v) else f"{v:.3f}"))
            blocks += [f"Selection grid ({', '.join(selection.select_on)}): mean final validation accuracy per point over the "
                       "tuning seeds, and over every seed where more ran (a diverged seed counts as 0); where the other seeds ran at more "
                       "than one point (a second look), the choice is the best of those over every seed. The chosen point "
                       "gives every number above.", grid]  # fmt: skip
        return blocks
