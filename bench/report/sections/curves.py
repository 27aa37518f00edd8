"""Learning curves: test accuracy and test loss against training step, one line per setting at its
chosen grid point."""
from __future__ import annotations

from analyses import Block, Figure
from bench.report import figures
from bench.report.sections.base import ReportData, ReportSection

CAPTION = "one line per setting at its chosen learning rate"


class LearningCurves(ReportSection):
    name = "curves"
    title = "Learning curves"
    order = 70

    def blocks(self, data: ReportData) -> list[Block]:
        curves, out = data.curves, data.figure_dir
        if curves.empty or "test_accuracy" not in curves:
            return []
        return [
            Figure(figures.learning_curves(curves, "test_accuracy", "test accuracy", out / "curves_accuracy.png"),
                   f"Test accuracy against training step, {CAPTION}."),
            Figure(figures.learning_curves(curves, "test_loss", "test loss (nats)", out / "curves_loss.png", log_y=True),
                   f"Test cross-entropy on scored positions against training step, {CAPTION}."),
        ]  # fmt: skip
