"""Hydra callbacks: record the jobs a sweep asks for when it starts, and build its report when it ends."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.cli import sweep_job_names
from bench.core.results import JOBS_FILE, write_json_atomic
from bench.report.build import accuracy_table, write_report
from bench.report.records import expected_jobs

log = logging.getLogger(__name__)


class ReportOnMultirunEnd(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        names = sweep_job_names(config)
        if names is not None:
            write_json_atomic(sweep_dir / JOBS_FILE, sorted(set(names) | set(expected_jobs(sweep_dir) or [])))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = write_report(sweep_dir)
            table = accuracy_table([sweep_dir])
        except OSError as error:  # a full disk or a read-only sweep: said in one line, the results stand
            log.error("could not write the report for %s (%s); rebuild it with python -m bench.report %s", sweep_dir, error.strerror, sweep_dir)
            return
        except Exception:  # the results are on disk; a report failure must not hide them
            log.exception("could not build the report for %s", sweep_dir)
            return
        if len(table):
            print(f"test accuracy, mean [95% interval] (n = seeds):\n{table.to_string()}\n")
        print(f"report: {report}\n        {report.with_name('report.html')}")
