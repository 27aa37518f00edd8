"""Verdicts: which variant solves which task, which fails, and which is not established, and why.

One verdict per model (or control) x task x difficulty point, over the selected runs (bench.report
.protocol), in this order:

- **solves**: at least MOST of the seeds (diverged ones counted) reach the task's ``solved_at``
  test accuracy (SOLVED unless the task states its own).
- **not established**, when the data cannot support a negative verdict: some seeds solve and too
  few to count ("seeds disagree"), a seed was still improving when its budget ended at its stated
  maximum ("still improving"), the learning rate chosen on validation sits on the edge of the
  grid it was tuned on ("grid edge") or was not tuned over MIN_GRID values at least ("untuned"),
  a record lacks the counts of the chance test ("chance untested": records from before they were
  kept), or the model is ahead of the control by a difference the rule cannot resolve ("vs
  control").
- **at chance**: most seeds are not above the task's chance given the context
  (``chance_given_context``: a uniform guess among the candidate answers in the context, each
  task's docstring says which; a lower bound on what a model without the ability can reach, the
  control measures the rest) by a one-sided binomial test over the run's scored test positions,
  taken as independent (positions of one sequence are not, so the test is lenient: it grants
  "above chance" more easily than a per-sequence test would).
- **no better than the control**: the model's mean is at or below the positional control's (a
  variant whose scores depend on positions alone) at the same task and point, over at least two
  seeds.
- **partial**: above chance, and ahead of the control by the one statistical rule
  (plugin.statistics.compare: a paired t-test over the seeds both ran), below the threshold;
  "no control" where the sweep ran none.

A constructed variant (weights set by hand) is a reference, shown with its number and no verdict.
Pairwise comparisons use the same rule; where both models hold the target in every seed (their
accuracy pinned near the ceiling by the early stop), they are compared on steps to target instead.
"""
from __future__ import annotations

import math
from itertools import combinations

import pandas as pd

from plugin.statistics import ALPHA, above_chance, compare
from tasks import TASKS

SOLVED = 0.95  # test accuracy at which a seed solves a task that states no threshold of its own
MOST = 0.8  # the share of seeds that must solve for "solves" (4 of 5)
SOLVES, PARTIAL, NOT_ESTABLISHED, AT_CHANCE, CONTROL = "solves", "partial", "not established", "at chance", "no better than control"
REFERENCE = "reference"
VERDICTS = (SOLVES, PARTIAL, NOT_ESTABLISHED, CONTROL, AT_CHANCE, REFERENCE)


def run_chance(runs: pd.DataFrame) -> pd.Series:
    """Each run's chance level given the context, or the context-free one a record from before it lacks."""
    given = pd.to_numeric(runs["chance_given_context"], errors="coerce") if "chance_given_context" in runs else pd.Series(math.nan, index=runs.index)
    return given.fillna(pd.to_numeric(runs["chance_accuracy"], errors="coerce"))


def above_chance_p(runs: pd.DataFrame) -> pd.Series:
    """Per run, the binomial p-value that its test accuracy is above its chance (NaN without counts)."""
    scored = pd.to_numeric(runs["test_scored"], errors="coerce") if "test_scored" in runs else pd.Series(math.nan, index=runs.index)
    chance = pd.to_numeric(run_chance(runs), errors="coerce")
    return pd.Series([above_chance(round(accuracy * n), int(n), c) if n == n and n >= 1 and 0 < c < 1 else math.nan
                      for accuracy, n, c in zip(runs["test_accuracy"], scored, chance)], index=runs.index, dtype=float)  # fmt: skip


def paired_compare(first: pd.DataFrame, second: pd.DataFrame, column: str):
    """The rule's comparison of `column` between two groups of runs: paired over the seeds both ran
    (same seed, same data) where they share at least two, two-sample otherwise."""
    a, b = first.set_index("seed")[column].dropna(), second.set_index("seed")[column].dropna()
    shared = sorted(set(a.index) & set(b.index))
    if len(shared) >= 2:
        return compare(a[shared].tolist(), b[shared].tolist(), paired=True)
    return compare(a.tolist(), b.tolist(), paired=False)


def solved_at(runs: pd.DataFrame) -> float:
    """The test accuracy at which the runs' task counts as solved (Task.solved_at; SOLVED for a task
    this installation does not know)."""
    name = runs["task_name"].iloc[0] if "task_name" in runs else runs["task"].iloc[0]
    return getattr(TASKS.get(name), "solved_at", SOLVED)


def verdict(runs: pd.DataFrame, control: pd.DataFrame | None, edge: str, untuned: str, diverged: int = 0) -> tuple[str, str]:
    """(verdict, one-word reason) of one model's completed runs at one task and point (module
    docstring); `diverged` seeds at the same point count as seeds that did not solve it."""
    if runs["role"].iloc[0] == "constructed":
        return REFERENCE, "constructed"
    solved, seeds = runs["test_accuracy"] >= solved_at(runs), len(runs) + diverged
    if solved.sum() >= MOST * seeds:
        return SOLVES, "all seeds" if solved.sum() == seeds else f"{int(solved.sum())}/{seeds} seeds"
    if solved.any():
        return NOT_ESTABLISHED, "seeds disagree"
    if runs["budget_status"].eq("still improving").any():
        return NOT_ESTABLISHED, "still improving"
    if edge:
        return NOT_ESTABLISHED, "grid edge"
    if untuned and runs["role"].iloc[0] == "model":
        return NOT_ESTABLISHED, "untuned"
    p_values = above_chance_p(runs)
    if p_values.isna().any():  # a record without its scored count (one from before they were kept)
        return NOT_ESTABLISHED, "chance untested"
    if (p_values >= ALPHA).mean() > 0.5:
        return AT_CHANCE, "chance"
    if runs["role"].iloc[0] != "model":
        return PARTIAL, "above chance"
    if control is None:
        return PARTIAL, "no control"
    comparison = paired_compare(runs, control, "test_accuracy")
    if comparison.resolved and comparison.difference > 0:
        return PARTIAL, "above chance"
    if comparison.difference <= 0 and comparison.n >= 2:
        return CONTROL, "control"
    return NOT_ESTABLISHED, "vs control"  # ahead of the control by too little, or too few seeds, to tell


def chosen_marks(chosen: pd.DataFrame, column: str, settings, task: str) -> str:
    """The keys a grid's chosen rows mark in `column` (edge, untuned) for these settings at a task."""
    if column not in chosen:
        return ""
    return ",".join(sorted({str(chosen[column].get((setting, task), "") or "") for setting in settings} - {""}))


def verdict_table(points: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """One row per model x task x point: verdict, reason, mean test accuracy, seeds, and the
    numbers behind the reason (chance, the control's accuracy, budget)."""
    if points.empty:
        return pd.DataFrame(columns=["model", "role", "task", "point", "verdict", "reason", "test_accuracy", "seeds"])
    chosen = grid[grid["chosen"]].set_index(["setting", "task"])
    points = points.assign(budget_status=points["budget_status"] if "budget_status" in points else None)
    rows = []
    for (task, point), at_point in points.groupby(["task", "point"], sort=False):
        controls = at_point[at_point["role"] == "control"]
        control = controls[controls["model"] == controls["model"].iloc[0]] if len(controls) else None
        for model, runs in at_point.groupby("model", sort=False):
            settings = runs["setting"].unique()
            diverged = int(sum(chosen["diverged"].get((s, task), 0) for s in settings)) if "diverged" in chosen else 0
            label, reason = verdict(runs, control, chosen_marks(chosen, "edge", settings, task), chosen_marks(chosen, "untuned", settings, task), diverged)
            rows.append({"model": model, "role": runs["role"].iloc[0], "task": task, "point": point, "verdict": label, "reason": reason,
                         "test_accuracy": runs["test_accuracy"].mean(), "seeds": len(runs) + diverged, "chance": run_chance(runs).mean(),
                         "control_accuracy": control["test_accuracy"].mean() if control is not None else math.nan,
                         "steps": runs["budget_steps"].max() if "budget_steps" in runs else math.nan,
                         "parameters": runs["n_params"].median() if "n_params" in runs else math.nan})  # fmt: skip
    return pd.DataFrame(rows)


# What two runs of one seed must share to be the same model: every test number and the steps they ran.
SAME_RUN_COLUMNS = ("test_accuracy", "test_loss", "steps_run")


def same_runs(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two models' runs are one computation under two names: the same seeds (two or more),
    each with the same test numbers and steps (sliding_window with a window as long as the context is
    standard)."""
    columns = [column for column in SAME_RUN_COLUMNS if column in a and column in b]
    if len(a) < 2 or set(a["seed"]) != set(b["seed"]) or a["seed"].duplicated().any() or not columns:
        return False
    return a.set_index("seed")[columns].sort_index().equals(b.set_index("seed")[columns].sort_index())


def identical_models(points: pd.DataFrame) -> list[str]:
    """'sliding_window = standard on copy' for every pair of models whose runs at a task and point are the same."""
    found = []
    for (task, point), at_point in points.groupby(["task", "point"], sort=False):
        for first, second in combinations(sorted(at_point["model"].unique()), 2):
            if same_runs(at_point[at_point["model"] == first], at_point[at_point["model"] == second]):
                found.append(f"{first} = {second} on {f'{task} {point}'.strip()}")
    return found


def pairwise(points: pd.DataFrame) -> pd.DataFrame:
    """Every pair of models (controls included) at each task and point, by the one rule: on test
    accuracy, or on steps to target where both held the target in every seed."""
    rows = []
    ranked = points[points["role"] != "constructed"]
    for (task, point), at_point in ranked.groupby(["task", "point"], sort=False):
        means = at_point.groupby("model")["test_accuracy"].mean().sort_values(ascending=False)
        for first, second in combinations(means.index, 2):
            a, b = at_point[at_point["model"] == first], at_point[at_point["model"] == second]
            if same_runs(a, b):  # one model under two names (a window as long as the context): not ranked twice
                continue
            at_ceiling = a["steps_to_target"].notna().all() and b["steps_to_target"].notna().all()
            measure = "steps_to_target" if at_ceiling else "test_accuracy"
            result = paired_compare(a, b, measure)
            rows.append({"task": task, "point": point, "first": first, "second": second, "measure": measure.replace("_", " "),
                         "difference": result.difference, "test": result.test, "p": result.p_value, "n": result.n,
                         "resolved": result.resolved, "seeds_needed": result.seeds_needed, "summary": result.describe(digits=0 if at_ceiling else 3)})  # fmt: skip
    return pd.DataFrame(rows)
