"""The Hydra task function: one training run, recorded in its output directory's result.json.

The record is written when the job starts (status "running"), and again when it ends:
"completed", "diverged" (non-finite training loss) or "failed" (with the error and traceback).
In a sweep a failure is recorded and the sweep goes on; a single run re-raises it and exits
non-zero.
"""
from __future__ import annotations

import logging
import os
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

from bench.analysis import length_generalisation, save_attention_example
from bench.config import CONF_DIR, CONFIG_NAME, build_model, build_task, options, run_identity, validate
from bench.heads import head_scores
from bench.results import (
    RESULT_FILE,
    config_hash,
    environment,
    read_result,
    remove_stale_temporaries,
    write_json_atomic,
)
from bench.train import train
from tasks.induction import Induction

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def already_done(previous: dict[str, Any] | None, digest: str, cfg: DictConfig) -> bool:
    """True when resuming and the job's last result, for this same config, need not be redone."""
    if not cfg.resume or previous is None or previous.get("config_hash") != digest:
        return False
    finished_badly = previous.get("status") in ("failed", "diverged")
    return previous.get("status") == "completed" or (finished_badly and not cfg.rerun_failed)


def run(
    cfg: DictConfig, output_dir: Path, single_run: bool, overrides: list[str], threads: int | None = None
) -> dict[str, Any]:
    """Validate, build, train and record one job (unless resuming finds it done); returns its record.

    `threads` sets torch's thread count for the job (None: leave it as it is).
    """
    config = OmegaConf.to_container(cfg, resolve=True)
    digest = config_hash(run_identity(config))
    result_path = output_dir / RESULT_FILE
    previous = read_result(result_path)
    if already_done(previous, digest, cfg):
        log.info("%s: already %s for this config, skipped (resume=false runs it again)", result_path, previous["status"])
        return previous
    if previous is not None and previous.get("config_hash") != digest:
        log.warning("%s held the result of another config; it is replaced", result_path)
    record: dict[str, Any] = {
        "status": "running",
        "variant": cfg.variant.name,
        "task": cfg.task.name,
        "seed": cfg.seed,
        "config": config,
        "config_hash": digest,
        "overrides": overrides,
        "started_at": now(),
        "environment": environment(),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir)
    write_json_atomic(result_path, record)
    started = time.perf_counter()
    try:
        validate(cfg)
        record.update(execute(cfg, output_dir, progress=single_run and cfg.train.progress, threads=threads))
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


def threads_per_job(launcher: DictConfig) -> int:
    """This machine's cores shared among the jobs the launcher runs at once, so that parallel
    jobs do not oversubscribe them: joblib runs n_jobs at once, submitit gives cpus_per_task."""
    cores = os.cpu_count() or 1
    if launcher.get("cpus_per_task"):
        return launcher.cpus_per_task
    n_jobs = launcher.get("n_jobs") or 1
    parallel = n_jobs if n_jobs > 0 else cores + 1 + n_jobs  # joblib: -1 means every core
    return max(1, cores // max(1, parallel))


def execute(cfg: DictConfig, output_dir: Path, progress: bool, threads: int | None) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
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
    lengths = length_generalisation(
        model, task, options(cfg.task), list(cfg.analysis.length_factors), cfg.train.eval_batches, cfg.train.batch_size, cfg.seed, device
    )
    save_attention_example(model, task, cfg.analysis.attention_positions, cfg.seed, device, output_dir)
    return {
        "status": outcome.status,
        "metrics": vars(outcome.final),
        "curve": outcome.curve,
        "steps_to_target": outcome.steps_to_target,
        "steps_run": outcome.steps_run,
        "head_scores": scores,
        "length_generalisation": lengths,
        "num_threads": torch.get_num_threads(),
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
        threads=cfg.train.num_threads or threads_per_job(hydra_config.launcher),
    )
    return record.get("metrics", {}).get("accuracy")
