"""The project's default Hydra launcher (``hydra/launcher=surviving``): what Hydra's basic launcher
does, one job after another in this process, except that a job that cannot even start is recorded
and the sweep goes on. It is built on Hydra's public launcher interface and helpers only.

Hydra creates a job's directory and writes its .hydra/ files before the job's own code runs, so a
file where the directory should be, or a read-only directory, raises there and would end the
whole sweep without a report. This launcher catches that per job, records the job and its cause
in the sweep's ``unstartable.json`` (the report lists them as failed) and returns a result that
lets the sweep go on.

(No ``from __future__ import annotations`` here: Hydra imports plugin modules without registering
them in sys.modules, where dataclasses look string annotations up.)
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from bench.core.results import UNSTARTABLE_FILE, record_unstartable

log = logging.getLogger(__name__)


@dataclass
class SurvivingLauncherConf:
    _target_: str = "hydra_plugins.bench_launcher.surviving_launcher.SurvivingLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="surviving", node=SurvivingLauncherConf, provider="attention-bench")


def job_name(job_config, overrides: Sequence[str]) -> str:
    """The job's directory name under the sweep (hydra.sweep.subdir), or its overrides if that cannot be resolved."""
    try:
        return str(job_config.hydra.sweep.subdir)
    except Exception:  # the subdir interpolation needs the Hydra state the failed start did not finish setting
        return ",".join(sorted(overrides))


class SurvivingLauncher(Launcher):
    def __init__(self) -> None:
        super().__init__()
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the jobs one after another in this process, numbered from initial_job_idx."""
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None, "setup() first"
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally, one at a time")
        returns = []
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
            job_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(job_config):
                job_config.hydra.job.id = job_config.hydra.job.num = number
            try:
                returns.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=job_config,
                                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))  # fmt: skip
            except Exception as error:  # before the job's own code ran: its directory could not be made ready
                record_unstartable(sweep_dir, list(overrides), job_name(job_config, overrides), error)
                log.error("job #%s could not start (%s: %s); recorded in %s, the sweep goes on",
                          number, type(error).__name__, error, sweep_dir / UNSTARTABLE_FILE)  # fmt: skip
                returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns
