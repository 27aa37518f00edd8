"""Accuracy by slice: test accuracy broken down by what the generator planted."""
from __future__ import annotations

from analyses import Block, Figure
from bench.report import figures
from bench.report.protocol import with_identity
from bench.report.sections.base import ReportData, ReportSection


class Slices(ReportSection):
    name = "slices"
    title = "Accuracy by slice"
    order = 80

    def blocks(self, data: ReportData) -> list[Block]:
        slices = with_identity(data.results.slices, data.selection.selected)
        per_run = figures.binned_slices(slices) if not slices.empty else slices
        if per_run.empty:
            return []
        return [
            "Test accuracy broken down by what the generator planted (for example induction's gap back to the earlier "
            "occurrence, or the copied string's length): per run, correct / scored at each value (values binned where there "
            "are many), then the mean over seeds.",
            Figure(figures.slice_accuracy(per_run, data.figure_dir / "slices.png"), "Test accuracy per slice value (band: 95% interval over seeds)."),
        ]
