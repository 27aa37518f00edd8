"""Running the analyses on a trained model, and their stored outputs.

Each analysis writes ``<job>/analyses/<name>.json`` (status, options, code hash, rows) and, if it
measured tensors, ``<name>.safetensors`` beside it, both atomically: re-running one analysis
replaces its own output and nothing else. An output is current while the analysis's options
and the code of its module are those recorded; a job that resumes, and ``python -m
bench.analyze``, re-run only the analyses that are not current.

An analysis that breaks, in any of its hooks or in storing what it measured, is recorded as
failed with its error: the trained run stays completed and the other analyses still run.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file
from torch import nn

from analyses import ANALYSES, Analysis, TrainedRun
from bench.core.config import build_analyses, build_task, options
from bench.core.results import atomic_path, plugin_hash, read_result, write_json_atomic
from bench.core.train import evaluate, stream
from tasks import Task

ANALYSIS_DIR = "analyses"
WEIGHTS_FILE = "model.safetensors"
CURRENT = ("completed", "not_applicable")

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def trained_run(model: nn.Module, task: Task, cfg: DictConfig, device: torch.device) -> TrainedRun:
    return TrainedRun(
        model=model.eval(), task=task, config=cfg, device=device,
        stream=lambda name: stream(cfg.seed, name),
        evaluate=lambda batch: evaluate(model, batch, cfg.train.batch_size).metrics(),
        make_task=lambda **changes: build_task(cfg, **changes),
    )  # fmt: skip


def analysis_identity(analysis: Analysis, cfg: DictConfig) -> dict[str, Any]:
    return {"options": options(cfg.analysis[analysis.name]), "code": plugin_hash(type(analysis))}


def output_path(job_dir: Path, name: str) -> Path:
    return job_dir / ANALYSIS_DIR / f"{name}.json"


def read_output(job_dir: Path, name: str) -> dict[str, Any] | None:
    """An analysis's stored output, or None where there is none or it is unreadable."""
    output = read_result(output_path(job_dir, name))
    return output if isinstance(output, dict) else None


def read_tensors(job_dir: Path, name: str) -> dict[str, torch.Tensor]:
    path = job_dir / ANALYSIS_DIR / f"{name}.safetensors"
    return load_file(path) if path.exists() else {}


def is_current(job_dir: Path, analysis: Analysis, cfg: DictConfig) -> bool:
    output = read_output(job_dir, analysis.name)
    return output is not None and output.get("status") in CURRENT and output.get("identity") == analysis_identity(analysis, cfg)


def run_analyses(model: nn.Module, task: Task, cfg: DictConfig, device: torch.device, job_dir: Path,
                 names: list[str] | None = None, only_stale: bool = False) -> dict[str, str]:  # fmt: skip
    """Run the registered analyses (or those named) on a trained model and store each one's output;
    with only_stale, skip those whose output is current. Returns each run analysis's status."""
    run = trained_run(model, task, cfg, device)
    return {
        name: run_analysis(analysis, run, job_dir)
        for name, analysis in build_analyses(cfg, names).items()
        if not (only_stale and is_current(job_dir, analysis, cfg))
    }


def run_analysis(analysis: Analysis, run: TrainedRun, job_dir: Path) -> str:
    """Run one analysis and store its output; returns its status. Whatever it raises, in `applies`,
    in `measure` or in storing rows and tensors it measured, is recorded as its failure."""
    header = {"analysis": analysis.name, "identity": analysis_identity(analysis, run.config), "measured_at": now()}
    try:
        reason = analysis.applies(run)
        if reason is not None:
            record = {**header, "status": "not_applicable", "reason": reason}
        else:
            with torch.no_grad():
                measurement = analysis.measure(run)
            write_tensors(job_dir, analysis.name, measurement.tensors)
            record = {**header, "status": "completed", "rows": measurement.rows, "tensors": sorted(measurement.tensors)}
        write_output(job_dir, record)
    except Exception as error:  # an analysis that breaks is recorded; the run and the others stand
        record = {**header, "status": "failed", "error": f"{type(error).__name__}: {error}"}
        try:
            write_output(job_dir, record)
        except OSError:  # the job's directory takes no file: the status returned is all that is left
            log.exception("%s: analysis %s failed, and its failure could not be stored", job_dir, analysis.name)
    return record["status"]


def write_output(job_dir: Path, record: dict[str, Any]) -> None:
    (job_dir / ANALYSIS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_path(job_dir, record["analysis"]), record)


def write_tensors(job_dir: Path, name: str, tensors: dict[str, torch.Tensor]) -> None:
    path = job_dir / ANALYSIS_DIR / f"{name}.safetensors"
    if not tensors:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        save_file({key: value.detach().contiguous().cpu() for key, value in tensors.items()}, str(temporary))


def save_weights(model: nn.Module, job_dir: Path) -> Path:
    path = job_dir / WEIGHTS_FILE
    with atomic_path(path) as temporary:
        save_file({key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}, str(temporary))
    return path


def weights_hash(job_dir: Path) -> str:
    """The SHA-256 of a job's saved weights: its record holds it, so that damaged or swapped
    weights are found before anything reads them."""
    digest = hashlib.sha256()
    with open(job_dir / WEIGHTS_FILE, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights(model: nn.Module, job_dir: Path, record: dict[str, Any] | None = None) -> nn.Module:
    """The job's saved weights into model; ValueError where they are not the ones its record
    names (a record from before weights were hashed is taken at its word)."""
    expected = (record or {}).get("weights_sha256")
    if expected is not None and weights_hash(job_dir) != expected:
        raise ValueError(f"{WEIGHTS_FILE} is not the file its record names (damaged, or swapped with another run's)")
    model.load_state_dict(load_file(job_dir / WEIGHTS_FILE))
    return model


def weights_intact(job_dir: Path, record: dict[str, Any]) -> bool:
    """Whether a completed job's weights are there and are the ones its record names (read whole
    where the record names none)."""
    path = job_dir / WEIGHTS_FILE
    if not path.is_file():
        return False
    if record.get("weights_sha256") is not None:
        return weights_hash(job_dir) == record["weights_sha256"]
    try:
        load_file(path)
    except Exception:  # safetensors raises its own error for a truncated or garbled file
        return False
    return True


def stored_rows(job_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of every completed analysis output of a job, by analysis name."""
    rows = {}
    for name in ANALYSES:
        output = read_output(job_dir, name)
        if output is not None and output.get("status") == "completed" and isinstance(output.get("rows"), list):
            rows[name] = output["rows"]
    return rows
