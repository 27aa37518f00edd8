"""Experiment trackers (``logger=tensorboard``, ``logger=mlflow``, ``logger=wandb``; optional extras):
each job's learning curve (training, validation and test metrics at every evaluation step, the
learning rate and throughput), its resolved config and its final metrics, grouped the way each tool
groups runs:

    tensorboard   one run directory per job: <dir>/<job>            (default dir: <sweep>/tensorboard)
    mlflow        one experiment per sweep (its directory's name), one run per job
                  (default tracking URI: the file store <sweep>/mlruns)
    wandb         offline mode: one run per job in the group named for the sweep (default dir: <sweep>)

A job is logged once it has ended, from the record it wrote (bench.core.results), so a tracker sees
exactly the numbers of the result file; a tracker that fails is named in the job's log and the job's
result stands. ``logger.dir`` sets where the files go, ``logger.tracking_uri`` an MLflow server,
``logger.project`` the W&B project.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench import ConfigError
from bench.core.results import dotted

log = logging.getLogger(__name__)

# Each tracker, the module it needs, and the extra that installs it.
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
LOGGERS = ("none", *TRACKERS)


def check_logger(logger: DictConfig) -> None:
    """Raise ConfigError where the chosen tracker's package is not installed, naming the extra."""
    if logger.name in TRACKERS:
        module, extra = TRACKERS[logger.name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"logger={logger.name} needs the {module} package; install it with: pip install 'attention-bench[{extra}]'")


def curve_metrics(point: dict[str, Any]) -> dict[str, float]:
    """One evaluation's numbers under the trackers' names: validation_accuracy -> validation/accuracy."""
    metrics = {}
    for key, value in point.items():
        if key == "step" or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        split, _, name = key.partition("_")
        metrics[f"{split}/{name}" if split in ("train", "validation", "test") else key] = float(value)
    return metrics


def final_metrics(record: dict[str, Any]) -> dict[str, float]:
    return {f"final/{split}_{key}": float(value) for split, values in (record.get("metrics") or {}).items()
            for key, value in values.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}  # fmt: skip


def log_job(logger: DictConfig, record: dict[str, Any], job_dir: Path, sweep_dir: Path) -> None:
    """Send the ended job's record to the configured tracker (module docstring)."""
    if logger.name == "none":
        return
    try:
        {"tensorboard": to_tensorboard, "mlflow": to_mlflow, "wandb": to_wandb}[logger.name](logger, record, job_dir, sweep_dir)
    except Exception:  # the result file holds the numbers; a tracker's failure must not undo them
        log.exception("%s could not log %s; its result stands", logger.name, job_dir)


def to_tensorboard(logger: DictConfig, record: dict[str, Any], job_dir: Path, sweep_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(Path(logger.dir or sweep_dir / "tensorboard") / job_dir.name))
    try:
        for point in record.get("curve") or []:
            for tag, value in curve_metrics(point).items():
                writer.add_scalar(tag, value, point.get("step", 0))
        last = (record.get("curve") or [{}])[-1].get("step", 0)
        for tag, value in final_metrics(record).items():
            writer.add_scalar(tag, value, last)
        writer.add_text("config", "```\n" + OmegaConf.to_yaml(OmegaConf.create(record.get("config") or {})) + "```")
    finally:
        writer.close()


def to_mlflow(logger: DictConfig, record: dict[str, Any], job_dir: Path, sweep_dir: Path) -> None:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = logger.tracking_uri or f"file:{Path(logger.dir or sweep_dir / 'mlruns').absolute()}"
    if uri.startswith("file:"):  # MLflow keeps its file store working only when asked (it points servers to a database)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(sweep_dir.name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(sweep_dir.name)
    run = client.create_run(experiment_id, run_name=job_dir.name, tags={"variant": str(record.get("variant")), "task": str(record.get("task"))})
    metrics = [Metric(key, value, 0, point.get("step", 0)) for point in record.get("curve") or [] for key, value in curve_metrics(point).items()]
    metrics += [Metric(key.replace("/", "_"), value, 0, 0) for key, value in final_metrics(record).items()]
    params = [Param(key, str(value)[:6000]) for key, value in dotted(record.get("config") or {}).items()]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params and 1,000 metrics a batch
        client.log_batch(run.info.run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start : start + 1000])
    client.set_terminated(run.info.run_id, status="FINISHED" if record.get("status") == "completed" else "FAILED")


def to_wandb(logger: DictConfig, record: dict[str, Any], job_dir: Path, sweep_dir: Path) -> None:
    import wandb

    run = wandb.init(mode="offline", dir=str(logger.dir or sweep_dir), project=logger.project, group=sweep_dir.name, name=job_dir.name,
                     config=record.get("config") or {}, reinit="create_new", settings=wandb.Settings(silent=True))  # fmt: skip
    try:
        for point in record.get("curve") or []:
            run.log(curve_metrics(point), step=point.get("step", 0))
        run.summary.update(final_metrics(record))
    finally:
        run.finish()
