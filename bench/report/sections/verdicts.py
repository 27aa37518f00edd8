"""Verdicts: the report's first table, which variant solves which task, which fails and which is
not established, with the number and the one-word reason of each (bench.report.verdicts)."""
from __future__ import annotations

import pandas as pd

from analyses import Block, Figure
from bench.report.protocol import swept_axes
from bench.report.sections.base import ReportData, ReportSection
from bench.report.verdicts import MOST, SOLVED, VERDICTS, identical_models
from plugin.plotting import pyplot, save, seaborn
from plugin.statistics import ALPHA

# One colour per verdict: green solves, amber partial, grey not established, reds for the failures.
VERDICT_COLOURS = {"solves": "#2e7d32", "partial": "#f9a825", "not established": "#9e9e9e", "no better than control": "#ef6c00",
                   "at chance": "#c62828", "reference": "#90caf9"}  # fmt: skip
# Models first, then the control beside them, then the constructed references.
ROLE_ORDER = {"model": 0, "control": 1, "constructed": 2}
# Columns of the heatmap before it wraps into another panel, so that it reads on a laptop screen.
COLUMNS_PER_PANEL = 8


class Verdicts(ReportSection):
    name = "verdicts"
    title = "Verdicts"
    order = 5

    def blocks(self, data: ReportData) -> list[Block]:
        table = data.verdicts
        if table.empty:
            return []
        table = table.assign(column=(table["task"] + " " + table["point"]).str.strip(),
                             row=table["model"] + table["role"].map({"model": "", "control": " (control)", "constructed": " (constructed)"}))  # fmt: skip
        # columns in each difficulty axis's numeric order (max_segment 4, 8, 16), not as text
        ordered = data.points.sort_values(["task", *swept_axes(data.selection)])
        columns = list(dict.fromkeys((ordered["task"] + " " + ordered["point"]).str.strip()))
        table = table.assign(column=pd.Categorical(table["column"], categories=columns, ordered=True)).sort_values("column")
        runs = data.selection.selected
        if {"train.steps", "train.max_extension"} <= set(runs.columns) and runs["train.max_extension"].notna().any():
            most = f"{int((runs['train.steps'] * runs['train.max_extension'].fillna(1)).max()):,}"
        else:
            most = "train.steps"
        rows = row_order(table)
        cells = table.assign(cell=table["test_accuracy"].map("{:.3f}".format) + " " + table["verdict"] + " (" + table["reason"] + ")")
        grid = cells.pivot(index="row", columns="column", values="cell").reindex(index=rows, columns=columns).fillna("—")
        grid.columns.name, grid.index.name = None, "variant"
        grid.insert(0, "parameters", parameter_counts(table).reindex(rows).fillna("—"))
        return [  # the heatmap and its table first: what a reader sees on opening the report
            Figure(heatmap(table, data.figure_dir / "verdicts.png"), "Verdict per variant and task, with its mean test accuracy."),
            grid.reset_index(),
            f"{len(runs)} runs, at most {runs['seed'].nunique()} seeds per cell, each at the learning rate chosen on validation; "
            "every number is mean test accuracy. Solves: at least "
            f"{MOST:.0%} of the seeds (a diverged one counted) reach the task's threshold ({SOLVED} unless the task states one). "
            f"At chance: most seeds not above the task's chance given the context (a uniform guess among the candidate "
            f"answers in the context) by a one-sided binomial test over scored positions (p < {ALPHA}). No better than "
            "control: mean at or below the positional control's. Partial: above chance and ahead of the control by a "
            f"paired t-test over shared seeds (p < {ALPHA}; \"no control\" where none ran). Not established: seeds "
            f"disagree; a seed still improving when its budget ended (at most {most} steps); the chosen rate on the edge of "
            "its tuned grid, or set rather than tuned over four values or more (untuned); ahead of the control by a "
            "difference the test cannot resolve (vs control); or a record without the chance test's counts.",
            *parameter_differences(table),
            *identical(data.points),
        ]


def identical(points: pd.DataFrame) -> list[str]:
    same = identical_models(points)
    return [f"The same model under two names (every seed's test numbers and steps equal), compared once: {'; '.join(same)}."] if same else []


# Parameter counts further apart than this are named beside the verdicts: a comparison between them is
# also one between model sizes.
PARAMETER_GAP = 0.10
REFERENCE = "standard"


def parameter_counts(table: pd.DataFrame) -> pd.Series:
    """Each row's parameter count, as a range where it differs between tasks (their vocabularies)."""
    counts = table.dropna(subset=["parameters"]).groupby("row")["parameters"].agg(["min", "max"])
    return counts.apply(lambda c: f"{int(c['min']):,}" if c["min"] == c["max"] else f"{int(c['min']):,}–{int(c['max']):,}", axis=1)


def parameter_differences(table: pd.DataFrame) -> list[str]:
    """A sentence naming the models whose parameter count differs from standard's at the same task by
    more than PARAMETER_GAP (from the median model's where standard did not run)."""
    gaps = []
    for column, at_column in table.dropna(subset=["parameters"]).groupby("column", observed=True):
        reference = at_column.loc[at_column["model"] == REFERENCE, "parameters"]
        base = reference.iloc[0] if len(reference) else at_column["parameters"].median()
        for row in at_column.itertuples():
            if abs(row.parameters - base) > PARAMETER_GAP * base:
                gaps.append(f"{row.row} {int(row.parameters):,} on {column}")
    if not gaps:
        return []
    reference = REFERENCE if (table["model"] == REFERENCE).any() else "the median model"
    return [f"Parameter counts more than {PARAMETER_GAP:.0%} from {reference}'s at the same task (a comparison with them is "
            f"also one between model sizes): " + "; ".join(gaps) + "."]


def row_order(table: pd.DataFrame) -> list[str]:
    """The table's rows, models first, then controls, then constructed references (ROLE_ORDER)."""
    return list(dict.fromkeys(table.assign(rank=table["role"].map(ROLE_ORDER)).sort_values(["rank", "row"])["row"]))


def heatmap(table: pd.DataFrame, path) -> object:
    """An annotated heatmap: one colour per verdict, the accuracy and reason in each cell, wrapped
    into panels of COLUMNS_PER_PANEL tasks."""
    sns, plt = seaborn(), pyplot()
    from matplotlib.colors import ListedColormap

    columns = list(dict.fromkeys(table["column"].astype(str)))
    table = table.assign(column=table["column"].astype(str))
    rows = row_order(table)
    panels = [columns[i : i + COLUMNS_PER_PANEL] for i in range(0, len(columns), COLUMNS_PER_PANEL)]
    width = min(21.0, 1.6 + 1.9 * min(len(columns), COLUMNS_PER_PANEL))
    figure, axes = plt.subplots(len(panels), 1, figsize=(width, (0.45 * len(rows) + 1.4) * len(panels)), squeeze=False, constrained_layout=True)
    codes = {verdict: index for index, verdict in enumerate(VERDICTS)}
    colours = ListedColormap([VERDICT_COLOURS[verdict] for verdict in VERDICTS])
    for axis, panel in zip(axes[:, 0], panels):
        subset = table[table["column"].isin(panel)]
        code = subset.pivot(index="row", columns="column", values="verdict").reindex(index=rows, columns=panel).apply(lambda c: c.map(codes))
        labels = (subset.assign(label=subset["test_accuracy"].map("{:.2f}".format) + "\n" + subset["reason"])
                  .pivot(index="row", columns="column", values="label").reindex(index=rows, columns=panel).fillna(""))  # fmt: skip
        sns.heatmap(code, annot=labels, fmt="", cmap=colours, vmin=-0.5, vmax=len(VERDICTS) - 0.5, cbar=False, linewidths=1,
                    linecolor="white", annot_kws={"fontsize": 8}, ax=axis)  # fmt: skip
        axis.set_xlabel("")
        axis.set_ylabel("")
        axis.tick_params(axis="x", rotation=20, labelsize=9)
        axis.tick_params(axis="y", rotation=0, labelsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=VERDICT_COLOURS[v]) for v in VERDICTS if v in set(table["verdict"])]
    figure.legend(handles, [v for v in VERDICTS if v in set(table["verdict"])], loc="outside lower center", ncol=len(handles), frameon=False)
    return save(figure, path)
