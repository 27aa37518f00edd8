"""The Hydra task function: one training run, recorded in its output directory.

The record (result.json) is written when the job starts (status "running"), and again when it
ends: "completed", "diverged" (non-finite training loss) or "failed" (with the error and
traceback). A completed job also saves its weights (model.safetensors) and the output of every
analysis (analyses/<name>.json). In a sweep a failure is recorded and the sweep goes on; a single
run re-raises it and exits non-zero.

A job's identity is its config (less run-control keys and analysis options) and the code that
makes its numbers: its variant and its task, each with the project modules they use, and
CODE_THAT_MAKES_THE_NUMBERS, the model, the training loop with its seeded data streams, and how a
config builds them. Logging, job bookkeeping, reporting and the command line are not in it, and
code counts without its comments and docstrings. Resuming skips a job only when both match: an
edited variant re-runs exactly its own jobs, an edited training loop every job, an edited log
message or comment none.

A sweep's jobs run in the process that launched it (the default launcher, one after another) or in
worker processes (joblib, submitit): `main` marks the launching process, so that a job knows which
it is without knowing the launcher.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import bench.core.model
import bench.core.train
import tasks
import variants
from bench import CONF_DIR, CONFIG_NAME
from bench.core.config import build_model, build_task, options, run_identity, validate
from bench.core.measure import WEIGHTS_FILE, load_weights, now, run_analyses, save_weights, weights_hash, weights_intact
from bench.core.results import (
    JOBS_FILE,
    RESULT_FILE,
    UNSTARTABLE_FILE,
    claim,
    record_unstartable,
    release,
    code_identity,
    config_hash,
    environment,
    read_result,
    remove_stale_temporaries,
    write_json_atomic,
)
from bench.core.train import train
from bench.trackers import log_job
from bench.external import load_external

log = logging.getLogger(__name__)


def identity(cfg: DictConfig) -> dict[str, Any]:
    """The config hash and the code identity of the job cfg describes."""
    config = OmegaConf.to_container(cfg, resolve=True)
    return {
        "config_hash": config_hash(run_identity(config)),
        "code": code_identity(variants.VARIANTS[cfg.variant.name], tasks.TASKS[cfg.task.name], CODE_THAT_MAKES_THE_NUMBERS),
    }


def already_done(previous: dict[str, Any] | None, current: dict[str, Any], cfg: DictConfig) -> bool:
    """True when resuming and the job's last result, for this same config and code, need not be redone."""
    if not cfg.resume or not isinstance(previous, dict) or any(previous.get(key) != value for key, value in current.items()):
        return False
    finished_badly = previous.get("status") in ("failed", "diverged")
    return previous.get("status") == "completed" or (finished_badly and not cfg.rerun_failed)


def run(
    cfg: DictConfig, output_dir: Path, single_run: bool, overrides: list[str], threads: int | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """Validate, build, train and record one job (unless resuming finds it done); returns its record.

    `threads` sets torch's thread count for the job (None: leave it as it is); `progress` shows a
    progress bar (default: in a single run, if train.progress).
    """
    if threads:
        torch.set_num_threads(threads)
    current = identity(cfg)
    result_path = output_dir / RESULT_FILE
    previous = read_result(result_path)
    if already_done(previous, current, cfg):
        if previous["status"] != "completed" or weights_intact(output_dir, previous):
            log.info("%s: already %s for this config and code, skipped (resume=false runs it again)", result_path, previous["status"])
            if previous["status"] == "completed":
                refresh_analyses(cfg, output_dir, previous)
            return previous
        log.warning("%s: its %s is missing, damaged or another run's; the job is run again", output_dir, WEIGHTS_FILE)
    if isinstance(previous, dict) and previous.get("config_hash") == current["config_hash"] and previous.get("code") != current["code"]:
        log.warning("%s was recorded with other code (%s); it is run again", result_path, previous.get("code"))
    record: dict[str, Any] = {
        "status": "running",
        "variant": cfg.variant.name,
        "task": cfg.task.name,
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
        **current,
        "overrides": overrides,
        "started_at": now(),
        "pid": os.getpid(),
        "environment": environment(),
    }
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        holder = claim(output_dir)
        if holder is not None:  # another live process runs this job now: one training per job
            log.warning("%s is being run by process %s on %s; skipped here", output_dir, holder.get("pid"), holder.get("hostname"))
            current_record = read_result(result_path)
            return current_record if isinstance(current_record, dict) else {**record, "claimed_by": holder}
        remove_stale_temporaries(output_dir)
        write_json_atomic(result_path, record)
    except OSError as error:  # a file where the directory should be, or a read-only one
        if single_run:
            raise
        record_unstartable(output_dir.parent, overrides, output_dir.name, error)
        log.error("%s cannot hold the job's record (%s: %s); recorded in the sweep's %s", output_dir, type(error).__name__, error, UNSTARTABLE_FILE)
        return {**record, "status": "failed", "error": f"could not write into its directory: {type(error).__name__}: {error}"}
    started = time.perf_counter()
    try:
        validate(cfg)
        record.update(execute(cfg, output_dir, progress=cfg.train.progress and (single_run if progress is None else progress)))
    except Exception as error:
        record.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        log.error("job failed: %s", record["error"])
        if single_run:
            raise
    finally:
        if record["status"] == "completed" and (output_dir / WEIGHTS_FILE).is_file():
            record["weights_sha256"] = weights_hash(output_dir)
        record.update(wall_time_s=time.perf_counter() - started, finished_at=now())
        try:
            write_json_atomic(result_path, record)
        except OSError as error:  # a full disk: no record is better than one left "running"
            result_path.unlink(missing_ok=True)
            record.update(status="failed", error=f"could not record its result ({error.strerror}); run the sweep again when there is room")
            log.error("%s: %s", output_dir, record["error"])
            if single_run:
                raise
        release(output_dir)
    log_job(cfg.logger, record, output_dir, output_dir if single_run else output_dir.parent)
    summary = f"{record['variant']} on {record['task']}, seed {record['seed']}: {record['status']}"
    if "metrics" in record:
        summary += f", test accuracy {record['metrics']['test']['accuracy']:.4f} after {record['steps_run']} steps"
    log.info("%s -> %s", summary, result_path)
    return record


def execute(cfg: DictConfig, output_dir: Path, progress: bool) -> dict[str, Any]:
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = build_task(cfg)
    model = build_model(cfg).to(device)
    steps = cfg.train.steps if model.trainable else 0
    outcome = train(model, task, cfg.train, cfg.seed, device, progress, steps)
    train_set = task.train_set()
    record = {
        "status": outcome.status,
        "metrics": {split: evaluation.metrics() for split, evaluation in outcome.evaluations.items()},
        "test_slices": outcome.evaluations["test"].slices,
        "chance_accuracy": task.chance_accuracy,
        "chance_given_context": outcome.chance_given_context,
        "budget": outcome.budget,
        "train_set_size": len(train_set) if train_set is not None else None,  # None: a generator, no finite set to memorise
        "curve": outcome.curve,
        "steps_to_target": outcome.steps_to_target,
        "steps_run": outcome.steps_run,
        "num_threads": torch.get_num_threads(),
        "n_params": sum(p.numel() for p in model.parameters()),
        "trained": model.trainable,
        "control": variants.VARIANTS[cfg.variant.name].is_control,
        "train_time_s": outcome.train_seconds,
        "train_tokens_per_s": outcome.tokens_per_second,
    }
    if outcome.status == "completed":
        save_weights(model, output_dir)
        record["analyses"] = run_analyses(model, task, cfg, device, output_dir)
    return record


# What every job's numbers depend on besides its variant and task (modules with the project modules
# they use, and single functions): editing any of it re-runs every job on resume.
CODE_THAT_MAKES_THE_NUMBERS = [bench.core.model, bench.core.train, options, build_task, build_model, execute]


def refresh_analyses(cfg: DictConfig, output_dir: Path, record: dict[str, Any]) -> None:
    """Re-run, from the saved weights, the analyses of a completed job whose output is not current."""
    try:
        device = torch.device(cfg.device)
        model = load_weights(build_model(cfg), output_dir, record).to(device)
        run_analyses(model, build_task(cfg), cfg, device, output_dir, only_stale=True)
    except Exception:  # the job's result stands; a stale analysis is the report's to show
        log.exception("could not bring the analyses of %s up to date", output_dir)


def jobs_at_once(launcher: DictConfig) -> int:
    """How many jobs the launcher runs at once: joblib's n_jobs (-1: every core), submitit's
    array_parallelism, else one."""
    if launcher.get("array_parallelism"):
        return launcher.array_parallelism
    n_jobs = launcher.get("n_jobs") or 1
    return max(1, n_jobs if n_jobs > 0 else (os.cpu_count() or 1) + 1 + n_jobs)


def threads_per_job(launcher: DictConfig) -> int:
    """This machine's cores shared among the jobs the launcher runs at once, so that parallel
    jobs do not oversubscribe them; submitit gives each job its cpus_per_task."""
    if launcher.get("cpus_per_task"):
        return launcher.cpus_per_task
    return max(1, (os.cpu_count() or 1) // jobs_at_once(launcher))


def sweep_progress(sweep_dir: Path, job_number: int, at_once: int = 1) -> str:
    """'job 4 of 18; 3 finished, about 6 min left (22 s per finished job, 2 at once)', from the jobs
    the sweep has recorded so far (jobs.json: a tuning sweep adds its later rounds as it reaches
    them) and the results already in its directory."""
    try:
        expected = json.loads((sweep_dir / JOBS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return f"job {job_number + 1}"
    finished = [r for r in (read_result(sweep_dir / job / RESULT_FILE) for job in expected) if isinstance(r, dict) and r.get("status") in ("completed", "failed", "diverged")]
    times = [r["wall_time_s"] for r in finished if isinstance(r.get("wall_time_s"), (int, float))]
    text = f"job {job_number + 1} of {len(expected)}; {len(finished)} finished"
    if times:
        mean = sum(times) / len(times)
        left = duration((len(expected) - len(finished)) * mean / at_once)
        text += f", about {left} left ({duration(mean)} per finished job{f', {at_once} at once' if at_once > 1 else ''})"
    return text


def duration(seconds: float) -> str:
    """'45 s', '12 min', '2 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


WATCHED: set[int] = set()  # the worker processes whose parent is watched (one thread each)
# The id of the process that called `main`: it runs the single run or the basic/surviving launcher's
# jobs itself. A worker is any other process: a spawned one (joblib's loky, submitit) imports this
# module afresh, with no id; a forked one inherits the id but has another pid.
LAUNCHING_PID: int | None = None


def mark_launching_process() -> None:
    global LAUNCHING_PID
    LAUNCHING_PID = os.getpid()


def runs_in_launching_process() -> bool:
    """Whether this job runs in the process that launched the run or sweep (one after another: a
    progress bar stays readable) rather than in a launcher's worker process."""
    return LAUNCHING_PID == os.getpid()


def end_with_parent() -> None:
    """In a worker process of a parallel launcher (joblib's loky workers, submitit's): exit as soon
    as the process that started it is gone, so that killing a sweep leaves no worker training and
    writing behind. The job it was running keeps its 'running' record, which the report reads as
    killed."""
    if os.getpid() in WATCHED:
        return
    WATCHED.add(os.getpid())
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def objective(record: dict[str, Any]) -> dict[str, Any]:
    """What a sweeper tunes on: the job's status and final validation numbers (never the test set's)."""
    validation = (record.get("metrics") or {}).get("validation", {})
    return {"status": record.get("status"), "validation_accuracy": validation.get("accuracy"), "validation_loss": validation.get("loss")}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def hydra_app(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's task function: one job of the run or sweep, in whichever process the launcher runs it."""
    load_external()  # a launcher's worker imports the user's plug-ins the command named (bench/external.py)
    hydra_config = HydraConfig.get()
    single_run = hydra_config.mode == RunMode.RUN
    output_dir = Path(hydra_config.runtime.output_dir)
    in_launching_process = runs_in_launching_process()
    if not in_launching_process:
        end_with_parent()
    if not single_run:
        log.info("%s: %s on %s, seed %s", sweep_progress(output_dir.parent, hydra_config.job.num, jobs_at_once(hydra_config.launcher)), cfg.variant.name, cfg.task.name, cfg.seed)
    record = run(
        cfg,
        output_dir,
        single_run=single_run,
        overrides=list(hydra_config.overrides.task),
        threads=cfg.train.num_threads or threads_per_job(hydra_config.launcher),
        progress=in_launching_process,
    )
    return objective(record)


def main() -> None:
    """Run the command line's job or sweep through Hydra, from this process marked as the launching one."""
    mark_launching_process()
    hydra_app()
