"""The Hydra task function: one training run, recorded in its output directory's result.json.

The record is written when the job starts (status "running"), and again when it ends:
"completed", "diverged" (non-finite training loss) or "failed" (with the error and traceback).
In a sweep a failure is recorded and the sweep goes on; a single run re-raises it and exits
non-zero.
"""
from __future__ import annotations

import logging
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench.heads import head_scores
from bench.config import CONF_DIR, CONFIG_NAME, build_model, build_task, validate
from bench.results import RESULT_FILE, config_hash, environment, write_json_atomic
from bench.train import train
from tasks.induction import Induction

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run(cfg: DictConfig, output_dir: Path, single_run: bool, overrides: list[str]) -> dict[str, Any]:
    """Validate, build, train and record one job; returns the final record."""
    config = OmegaConf.to_container(cfg, resolve=True)
    record: dict[str, Any] = {
        "status": "running",
        "variant": cfg.variant.name,
        "task": cfg.task.name,
        "seed": cfg.seed,
        "config": config,
        "config_hash": config_hash(config),
        "overrides": overrides,
        "started_at": now(),
        "environment": environment(),
    }
    result_path = output_dir / RESULT_FILE
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result_path, record)
    started = time.perf_counter()
    try:
        validate(cfg)
        record.update(execute(cfg, progress=single_run and cfg.train.progress))
    except Exception as error:
        record.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        log.error("job failed: %s", record["error"])
        if single_run:
            raise
    finally:
        record.update(wall_time_s=time.perf_counter() - started, finished_at=now())
        write_json_atomic(result_path, record)
    summary = f"{record['variant']} on {record['task']}, seed {record['seed']}: {record['status']}"
    if "metrics" in record:
        summary += f", eval accuracy {record['metrics']['accuracy']:.4f} after {record['steps_run']} steps"
    log.info("%s -> %s", summary, result_path)
    return record


def execute(cfg: DictConfig, progress: bool) -> dict[str, Any]:
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = build_task(cfg)
    model = build_model(cfg).to(device)
    steps = cfg.train.steps if model.trainable else 0
    outcome = train(model, task, cfg.train, cfg.seed, device, progress, steps)
    probe_length = min(task.seq_len, cfg.model.max_seq_len)
    scores = None
    if task.vocab_size >= Induction.min_vocab_size:
        scores = head_scores(model, task.vocab_size, probe_length, torch.Generator().manual_seed(2 * cfg.seed + 1))
    return {
        "status": outcome.status,
        "metrics": vars(outcome.final),
        "curve": outcome.curve,
        "steps_to_target": outcome.steps_to_target,
        "steps_run": outcome.steps_run,
        "head_scores": scores,
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_time_s": outcome.train_seconds,
        "train_tokens_per_s": outcome.tokens_per_second,
    }


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float | None:
    hydra_config = HydraConfig.get()
    record = run(
        cfg,
        Path(hydra_config.runtime.output_dir),
        single_run=hydra_config.mode == RunMode.RUN,
        overrides=list(hydra_config.overrides.task),
    )
    return record.get("metrics", {}).get("accuracy")
