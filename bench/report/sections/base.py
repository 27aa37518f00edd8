"""The contract of a report section, and the data every section reads (see the package docstring).

Sections and analyses share one order: a section's ``order`` and an analysis's ``report_order``
are on the same scale, analyses' sections appearing where the ``analyses`` section stands.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import pandas as pd

from analyses import Block
from bench.report.protocol import Selection, difficulty_columns, roles, select_runs, with_difficulty_point, with_identity
from bench.report.records import Results
from bench.report.verdicts import pairwise, verdict_table
from plugin import register

SECTIONS: dict[str, type[ReportSection]] = {}


@dataclass
class ReportData:
    results: Results
    sweep_dirs: list[Path]  # empty for a report rebuilt from saved tables
    figure_dir: Path
    speed_file: Path | None = None

    @cached_property
    def selection(self) -> Selection:
        return select_runs(self.results.runs)

    @cached_property
    def points(self) -> pd.DataFrame:
        """The selected runs with `model`, difficulty `point` (bench.report.protocol.with_difficulty_point) and `role`."""
        points = with_difficulty_point(self.selection)
        return points.assign(role=roles(points))

    @cached_property
    def axes(self) -> dict[str, list[str]]:
        """Per task, its swept difficulty axes."""
        return difficulty_columns(self.selection)

    @cached_property
    def verdicts(self) -> pd.DataFrame:
        """One verdict per model x task x point (bench.report.verdicts)."""
        return verdict_table(self.points, self.selection.grid)

    @cached_property
    def pairs(self) -> pd.DataFrame:
        """Every pairwise comparison by the one statistical rule (bench.report.verdicts.pairwise)."""
        return pairwise(self.points)

    @cached_property
    def curves(self) -> pd.DataFrame:
        """The learning curves of the selected runs, with their identity columns."""
        return with_identity(self.results.curves, self.selection.selected)


class ReportSection:
    name: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int]
    # Most sections describe the selected runs, and have nothing to say without any.
    needs_selected_runs: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        register(SECTIONS, "report section", cls)

    def blocks(self, data: ReportData) -> list[Block]:
        raise NotImplementedError

    def render(self, data: ReportData) -> list[tuple[str, list[Block]]]:
        """(heading, blocks) pairs: one, under the section's title, unless the section makes several."""
        if self.needs_selected_runs and data.selection.selected.empty:
            return []
        return [(self.title, self.blocks(data))]
