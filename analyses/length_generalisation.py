"""Length generalisation: test accuracy at multiples of the training length.

For each factor f in ``factors`` the run's task is rebuilt at seq_len f x T and the trained model
is evaluated on that length's test stream (at f = 1 this is the run's own test set):

    accuracy(f) = correct predictions / scored positions,  on sequences of length f T

with the task's chance level at that length beside it. A model that learned the rule rather than
the positions it saw keeps its accuracy as f grows; RoPE and learned positions often do not
(Kazemnejad et al. 2023, arXiv:2305.19466; Press et al. 2022, arXiv:2108.12409).
"""
from __future__ import annotations

from typing import Annotated


from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin.plotting import by_setting, save, seaborn
from plugin.statistics import INTERVAL_NOTE, describe, seed_band
from plugin import Range
from tasks import TASKS


class LengthGeneralisation(Analysis):
    name = "length_generalisation"
    title = "Length generalisation"
    report_order = 20

    def __init__(self, *, factors: Annotated[tuple[int, ...], Range(1, 64)] = (1, 2, 4)) -> None:
        if not factors:
            raise ValueError("analysis.length_generalisation.factors=[] must name at least one factor, e.g. [1,2,4]")
        self.factors = sorted(set(factors))

    def check(self, config) -> None:
        if TASKS[config.task.name].fixed_length:
            return
        longest = max(self.factors) * config.task.seq_len
        if longest > config.model.max_seq_len:
            raise ValueError(
                f"task.seq_len={config.task.seq_len} × {max(self.factors)} (the longest of "
                f"analysis.length_generalisation.factors) exceeds model.max_seq_len={config.model.max_seq_len}; "
                "allowed: seq_len × factor <= max_seq_len"
            )
        options = {key: value for key, value in config.task.items() if key != "name"}
        for factor in self.factors:
            TASKS[config.task.name](**{**options, "seq_len": factor * config.task.seq_len})

    def applies(self, run: TrainedRun) -> str | None:
        return f"task {run.task.name} has one fixed length" if run.task.fixed_length else None

    def measure(self, run: TrainedRun) -> Measurement:
        rows = []
        for factor in self.factors:
            task = run.make_task(seq_len=factor * run.task.seq_len)
            metrics = run.evaluate(run.test_set(task))
            rows.append({"factor": factor, "length": task.seq_len, "chance": task.chance_accuracy,
                         **{key: metrics[key] for key in ("loss", "accuracy", "exact_match")}})  # fmt: skip
        return Measurement(rows)

    def section(self, data: SectionData) -> list[Block]:
        sns = seaborn()
        rows = data.rows
        grid = sns.relplot(
            data=rows, x="length", y="accuracy", col="task", kind="line", markers=True, errorbar=seed_band,
            facet_kws={"sharex": False}, height=3.2, aspect=1.3, **by_setting(rows),
        )  # fmt: skip
        for task, axis in grid.axes_dict.items():
            chance = rows[rows["task"] == task].groupby("length")["chance"].first()
            axis.plot(chance.index, chance.values, color="grey", linestyle=":", label="chance")
            axis.set_xscale("log", base=2)
            axis.set_ylim(-0.02, 1.02)
        grid.set_axis_labels("sequence length (tokens, log2)", "test accuracy")
        grid.set_titles("{col_name}: trained at the shortest length")
        figure = save(grid.figure, data.figure_path("accuracy"))
        table = (
            rows.assign(factor=rows["factor"].map("{}× training length".format))
            .groupby(["setting", "task", "factor"])["accuracy"].agg(describe).unstack("factor").reset_index()
        )
        return [
            Figure(figure, "Test accuracy at multiples of the training length, on each length's own test stream "
                           "(line: mean over seeds; band: 95% interval; dotted: the task's chance level)."),
            f"Test accuracy, {INTERVAL_NOTE}:",
            table,
        ]
