"""The report: ``python -m bench.report <sweep_dir> [<sweep_dir> ...]`` gathers every result of one
or more sweeps into tables, figures and a report (report.md and a self-contained report.html).
A Hydra callback (bench.report.callbacks) writes it when a sweep ends."""
from bench.report.build import write_report

__all__ = ["write_report"]
