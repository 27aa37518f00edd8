"""Leaderboard: the protocol's summary score, where the experiment defines one (MAD's, computed
by bench.report.protocol.mad_scores)."""
from __future__ import annotations

from analyses import Block
from bench.report.protocol import mad_leaderboard
from bench.report.sections.base import ReportData, ReportSection
from plugin.statistics import INTERVAL_NOTE


class Leaderboard(ReportSection):
    name = "leaderboard"
    title = "Leaderboard"
    order = 10

    def blocks(self, data: ReportData) -> list[Block]:
        board = mad_leaderboard(data.selection)
        if board.empty:
            return []
        return [
            "MAD score (Poli et al. 2024): per seed, the mean over tasks of the mean over that task's difficulty settings of "
            f"the test accuracy at the grid point chosen on validation; {INTERVAL_NOTE}. A seed that lacks any setting the "
            "experiment ran gets no score (scored seeds); settings: the fewest a seed had of those the experiment ran.",
            board,
        ]
