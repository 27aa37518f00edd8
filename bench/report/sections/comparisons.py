"""Comparisons (appendix): every pair of models at each task and point by the one statistical rule
(plugin.statistics.compare), on test accuracy, or on steps to target where both held the target in
every seed, with the seeds that would resolve what is not resolved."""
from __future__ import annotations

from analyses import Block
from bench.report.sections.base import ReportData, ReportSection
from plugin.statistics import ALPHA, POWER


class Comparisons(ReportSection):
    name = "comparisons"
    title = "Appendix: pairwise comparisons"
    order = 105

    def blocks(self, data: ReportData) -> list[Block]:
        pairs = data.pairs
        if pairs.empty:
            return []
        table = pairs.assign(seeds_needed=pairs["seeds_needed"].map(lambda n: "" if n != n or n is None else f"{int(n)}")).round({"difference": 4, "p": 4})
        return [
            f"Each pair of models at the same task and point (first minus second). Resolved: p < {ALPHA} by a paired t-test "
            "over the seeds both ran (same seed, same data) where they share two or more, a two-sample t-test otherwise. Where both held the target in every "
            "seed the early stop pins accuracy near the ceiling, and they are compared on steps to target (lower is faster). "
            f"Seeds needed: how many the same test needs for {POWER:.0%} power at the observed effect (blank: resolved, or "
            "more than a thousand).",
            table,
        ]
