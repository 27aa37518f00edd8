"""Overview: how many runs each sweep holds and in what state, how many jobs have no result yet,
and the one set of runs every later table rests on."""
from __future__ import annotations

from analyses import Block
from bench.report.records import missing_jobs
from bench.report.sections.base import ReportData, ReportSection


class Overview(ReportSection):
    name = "overview"
    title = "Overview"
    order = 30
    needs_selected_runs = False

    def blocks(self, data: ReportData) -> list[Block]:
        runs, selection, sweeps = data.results.runs, data.selection, len(data.sweep_dirs)
        counts = ", ".join(f"{n} {s}" for s, n in runs["status"].fillna("no status").value_counts().items())
        source = f"{sweeps} sweep{'s' if sweeps != 1 else ''}" if sweeps else "saved tables"
        blocks: list[Block] = [f"{len(runs)} runs from {source}: {counts or 'none yet'}."]
        for sweep_dir, (asked, lost) in missing_jobs(data.results, data.sweep_dirs).items():
            blocks.append(f"{sweep_dir.name + '/' if sweeps > 1 else 'The sweep'} asked for {asked} jobs; {len(lost)} have no result yet.")
        blocks.append(
            f"Every table and figure below uses the same {len(selection.selected)} runs: the completed runs of each setting × task "
            f"at its {' × '.join(selection.select_on) or 'configuration'} chosen on the validation set of its tuning seeds (those run "
            "at every grid point; where a second look ran the other seeds at two points, of every seed at both). Every number is on "
            "the test set, which chose nothing."
        )  # fmt: skip
        return blocks
