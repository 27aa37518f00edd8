"""Length generalisation: test accuracy at multiples of the training length.

For each factor f in ``factors`` the run's task is rebuilt at seq_len f x T and the trained model
is evaluated on that length's test stream (at f = 1 this is the run's own test set):

    accuracy(f) = correct predictions / scored positions,  on sequences of length f T

with the task's chance given the context at that length beside it (``Task.chance_given_context``:
the best guess among the candidates the sequence shows). A model that learned the rule rather than
the positions it saw keeps its accuracy as f grows; RoPE and learned positions often do not
(Kazemnejad et al. 2023, arXiv:2305.19466; Press et al. 2022, arXiv:2108.12409).

What is held fixed is the task's rule, not the answer's absolute position. A task whose answer
lies at an offset tied to its length (fixed copy: half the length back, 16 at 32 tokens and 32 at
64; induction's "repeat" layout) asks a different rule at another length, on which every model,
the positional control and chance land together: the analysis declines it, since its fixed
offsets (``Task.fixed_offsets``) change with the length. A task with an offset that does not
(prev_token's 1) or none (variable copy, induction at random gaps, MQAR) is measured.
"""
from __future__ import annotations

from typing import Annotated


from omegaconf import DictConfig

from analyses.base import Analysis, Block, Figure, Measurement, SectionData, TrainedRun
from plugin.plotting import panels_per_row, save, settings_relplot
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
        if run.task.fixed_length:
            return f"task {run.task.name} has one fixed length"
        for factor in self.factors:
            longer = run.make_task(seq_len=factor * run.task.seq_len)
            if longer.fixed_offsets != run.task.fixed_offsets:
                return (f"the answer's offset is tied to the length ({', '.join(map(str, run.task.fixed_offsets))} back at "
                        f"{run.task.seq_len} tokens, {', '.join(map(str, longer.fixed_offsets))} at {longer.seq_len}): "
                        "a longer sequence asks a different rule, not the same one further out")
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        unit = Range(0, 1)
        lengths = Range(1) if config is None else Range(config.task.seq_len, max(self.factors) * config.task.seq_len)
        return {"factor": Range(1, 64), "length": lengths, "chance": unit, "loss": Range(0), "accuracy": unit, "exact_match": unit}

    def measure(self, run: TrainedRun) -> Measurement:
        rows = []
        for factor in self.factors:
            task = run.make_task(seq_len=factor * run.task.seq_len)
            test_set = run.test_set(task)
            metrics = run.evaluate(test_set)
            rows.append({"factor": factor, "length": task.seq_len, "chance": task.chance_given_context(test_set.to("cpu")),
                         **{key: metrics[key] for key in ("loss", "accuracy", "exact_match")}})  # fmt: skip
        return Measurement(rows)

    def section(self, data: SectionData) -> list[Block]:
        rows = data.rows
        grid = settings_relplot(
            rows, "task", panels_per_row(3.2 * 1.3, rows["task"].nunique()), x="length", y="accuracy", markers=True,
            errorbar=seed_band, facet_kws={"sharex": False}, height=3.2, aspect=1.3,
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
            .groupby(["setting", "task", "factor"])["accuracy"].agg(describe, bounds=self.bounds("accuracy")).unstack("factor").reset_index()
        )
        return [
            Figure(figure, "Test accuracy at multiples of the training length, on each length's own test stream "
                           "(line: mean over seeds; band: 95% interval; dotted: the task's chance given the context)."),
            f"Test accuracy, {INTERVAL_NOTE}:",
            table,
        ]
