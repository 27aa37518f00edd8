"""Hydra callbacks: build the report when a sweep ends."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.report import write_report

log = logging.getLogger(__name__)


class ReportOnMultirunEnd(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            report = write_report(Path(config.hydra.sweep.dir))
        except Exception:  # the results are on disk; a report failure must not hide them
            log.exception("could not build the report for %s", config.hydra.sweep.dir)
            return
        print(f"report: {report}")
