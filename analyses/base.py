"""The contract every analysis meets.

An analysis measures something of a trained run and contributes a section to the report. It is
one file: subclass ``Analysis`` with a ``name`` and it is registered, and its keyword-only
constructor options become config keys (``analysis.<name>.<option>``), typed and checked.

    class MeanAttentionDistance(Analysis):
        name = "mean_distance"
        title = "Mean attention distance"

        def measure(self, run: TrainedRun) -> Measurement:
            ...
            return Measurement(rows=[{"head": "L0H0", "distance": 3.2}, ...])

        def section(self, data: SectionData) -> list[Block]:
            return ["Mean distance i - j under each head's attention.", data.rows]

- ``applies(run)`` says whether the analysis can run on this run (None) or why not (a reason).
- ``measure(run)`` returns tidy rows (JSON scalars) and optional tensors; they are stored with the
  run, in ``analyses/<name>.json`` (and ``.safetensors``), so the report and
  ``python -m bench.analyze`` never need to train again.
- ``section(data)`` turns the rows of every selected run into report blocks: text, tables and
  figures. The report shows the sections of the analyses that have data, in ``report_order``.
- ``check(config)`` refuses options that cannot work with a run's config, before any compute.
- ``ranges(config)`` declares the range of every numeric value the rows hold, for a run of that
  config (or, with None, for any run): a test holds every measured value to it, over every shipped
  variant and over the committed reports, and the report's means and intervals are bounded by it.

Attention weights are read as shares, ``TrainedRun.attention_shares``: a_ij' = |a_ij| / sum_j |a_ij|
over the keys of each query row. For a softmax row this is the row itself; it keeps a score
defined on weights that are not a distribution (sigmoid's gates, whose rows do not sum to one;
differential's w1 - lambda w2, which is signed) inside the range it has for softmax attention,
where it reads as how much of the row's weight, of either sign, falls on each key.

Analyses use ``variants`` and ``tasks`` but never ``bench``: what they need of a run (the model,
its task, evaluation, seeded streams) comes in ``TrainedRun``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from plugin import Range, register
from tasks import Batch, Task
from variants import VARIANTS

ANALYSES: dict[str, type[Analysis]] = {}


@dataclass
class Figure:
    path: Path
    caption: str


Block = Union[str, pd.DataFrame, Figure]


@dataclass
class Measurement:
    rows: list[dict[str, Any]]
    tensors: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class TrainedRun:
    """What an analysis gets of a trained run."""

    model: nn.Module  # in eval mode, on `device`
    task: Task
    config: DictConfig  # the run's resolved config
    device: torch.device
    stream: Callable[[str], torch.Generator]  # an independent seeded generator per name
    evaluate: Callable[[Batch], dict[str, float]]  # loss, accuracy, exact_match on scored positions
    make_task: Callable[..., Task]  # the run's task with some options changed, e.g. seq_len

    @property
    def attention_layers(self) -> list[nn.Module]:
        return [block.attention for block in self.model.blocks]

    def attention_shares(self, tokens: Tensor) -> list[Tensor]:
        """Each layer's attention as shares (batch, n_heads, T, T): |a_ij| / sum_j |a_ij| per query row
        (0 where a row is all zero), float64 on the CPU; for softmax attention, the weights themselves."""
        shares = []
        for weights in self.model.attention_patterns(tokens.to(self.device)):
            magnitude = weights.detach().double().cpu().abs()
            shares.append(magnitude / magnitude.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny))
        return shares

    def test_set(self, task: Task | None = None, size: int | None = None) -> Batch:
        """`size` sequences (default: the run's evaluation size) of the test split of `task` (default:
        the run's), from the test stream: at the training length, the run's own test set."""
        task = task or self.task
        size = size or self.config.train.eval_batches * self.config.train.batch_size
        return task.evaluation_set("test", size, self.stream("test")).to(self.device)


@dataclass
class SectionData:
    """What an analysis gets to write its report section."""

    name: str
    rows: pd.DataFrame  # the analysis's rows of every selected run, with the run's identity columns
    runs: pd.DataFrame  # the selected runs, one row each (identity, metrics, flattened config)
    figure_dir: Path
    tensors: Callable[[str], dict[str, Tensor]]  # a run's saved tensors, by run id
    # another analysis's rows of the selected runs, by its name (empty where it has none): a section
    # that names a mechanism reads the ablations that test it
    rows_of: Callable[[str], pd.DataFrame] = lambda name: pd.DataFrame()
    selected: pd.DataFrame = field(default_factory=pd.DataFrame)  # every run the report selected, with its metrics

    def control_accuracy(self) -> dict[str, float]:
        """The positional control's mean test accuracy per task, among the report's selected runs."""
        runs = self.selected
        if runs.empty or "test_accuracy" not in runs:
            return {}
        controls = runs[runs["variant"].map(lambda name: getattr(VARIANTS.get(name), "is_control", False))]
        return controls.groupby("task")["test_accuracy"].mean().to_dict()

    def figure_path(self, stem: str) -> Path:
        return self.figure_dir / f"{self.name}_{stem}.png"

    def first_seed_per_group(self) -> pd.DataFrame:
        """One selected run per setting × task (its lowest seed), for per-example figures."""
        return self.runs.sort_values("seed").drop_duplicates(["setting", "task"]).sort_values(["setting", "task"])

    def examples(self) -> Iterator[tuple[Any, str, Path]]:
        """(run, title, figure path) of each per-example figure: one run per setting x task."""
        for run in self.first_seed_per_group().itertuples():
            stem = f"{run.setting}_{run.task}".replace(" ", "_").replace("/", "_")
            yield run, f"{run.setting} on {run.task} (seed {run.seed})", self.figure_path(stem)


class Analysis:
    name: ClassVar[str]
    title: ClassVar[str]
    report_order: ClassVar[int] = 50

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        register(ANALYSES, "analysis", cls)

    def __init__(self) -> None:
        """An analysis without options; one with options takes them keyword-only, with defaults."""

    def check(self, config: DictConfig) -> None:
        """Raise ValueError, naming the option and its limit, where the options cannot work with config."""

    def applies(self, run: TrainedRun) -> str | None:
        """None where the analysis can run on `run`, otherwise the reason it cannot."""
        return None

    def ranges(self, config: DictConfig | None = None) -> dict[str, Range]:
        """The range of each numeric column of the rows, for a run of `config`, or for any run with None."""
        raise NotImplementedError(f"analysis {self.name} declares no ranges(config): the range of each value it reports")

    def bounds(self, column: str) -> tuple[float, float]:
        """The range of `column` for any run, as the (low, high) that bounds a report's intervals."""
        declared = self.ranges()[column]
        return declared.low, declared.high

    def measure(self, run: TrainedRun) -> Measurement:
        raise NotImplementedError

    def cross_run_rows(self, data: SectionData) -> list[dict[str, Any]]:
        """Rows that relate a run to other runs (each names its "run"), for a section that compares runs
        through their saved tensors: a report computes them where it has the tensors and saves them
        with its tables (as analysis ``<name>.across``, read by ``data.rows_of``), so that a report
        rebuilt from its tables, or standing as another's --baseline, has them without the tensors.
        None by default."""
        return []

    def section(self, data: SectionData) -> list[Block]:
        raise NotImplementedError
