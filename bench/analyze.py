"""`python -m bench.analyze <sweep_dir> [analysis=<name>,<name>]`: run analyses again on a sweep's
saved runs, from their weights (model.safetensors), without training; then rebuild its report.

Every completed run is rebuilt from its recorded config, its weights loaded, and the named
analyses (all registered ones by default) run with the torch thread count the job used, so that
an unchanged analysis reproduces the numbers its job recorded bit for bit. Each analysis's output
(analyses/<name>.json) is replaced and nothing else; a run without weights is skipped and named.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from analyses import ANALYSES
from bench import first_line
from bench.core.config import build_model, build_task, compose_config
from bench.core.measure import WEIGHTS_FILE, load_weights, run_analyses
from bench.core.results import RESULT_FILE, read_result
from bench.report import write_report


def recorded_config(record: dict) -> DictConfig:
    """A run's recorded config over today's defaults for its variant and task (so that analyses
    registered since the run get their default options)."""
    defaults = compose_config([f"variant={record['variant']}", f"task={record['task']}"])
    recorded = dict(record["config"])
    # analysis options are not part of a job's identity: one that today's analysis no longer has (a
    # removed option, a removed analysis) is dropped, and today's defaults apply
    recorded["analysis"] = {name: {key: value for key, value in options.items() if key in defaults.analysis[name]}
                            for name, options in recorded.get("analysis", {}).items() if name in defaults.analysis}  # fmt: skip
    return OmegaConf.merge(defaults, recorded)


def analyze_run(job_dir: Path, names: list[str]) -> dict[str, str] | str:
    """Run the analyses on one job; their statuses, or why the job was skipped."""
    record = read_result(job_dir / RESULT_FILE)
    if not isinstance(record, dict) or record.get("status") != "completed":
        return "not a completed run"
    if not (job_dir / WEIGHTS_FILE).exists():
        return f"no {WEIGHTS_FILE} (deleted, or trained before weights were saved): run the sweep again to train it anew"
    try:
        cfg = recorded_config(record)
        if record.get("num_threads"):
            torch.set_num_threads(record["num_threads"])
        device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = load_weights(build_model(cfg), job_dir, record).to(device)
    except Exception as error:  # a damaged weights file or a config today's code refuses: this run only
        return f"cannot be rebuilt from its record and weights ({type(error).__name__}: {first_line(error)})"
    return run_analyses(model, build_task(cfg), cfg, device, job_dir, names)


def parse_names(arguments: list[str]) -> list[str]:
    names: list[str] = []
    for argument in arguments:
        key, _, value = argument.partition("=")
        if key != "analysis" or not value:
            raise ValueError(f"'{argument}' is not analysis=<name>[,<name>...]")
        names += value.split(",")
    unknown = [name for name in names if name not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analysis '{unknown[0]}'; allowed: {', '.join(sorted(ANALYSES))}")
    return names or sorted(ANALYSES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.analyze", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("analyses", nargs="*", help="analysis=<name>[,<name>...] (default: every registered analysis)")
    parser.add_argument("--no-report", action="store_true", help="do not rebuild the sweep's report afterwards")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"no sweep directory at {args.sweep_dir}")
    try:
        names = parse_names(args.analyses)
    except ValueError as error:
        parser.error(str(error))
    for result in sorted(args.sweep_dir.rglob(RESULT_FILE)):
        outcome = analyze_run(result.parent, names)
        line = outcome if isinstance(outcome, str) else ", ".join(f"{name} {status}" for name, status in outcome.items())
        print(f"{result.parent.relative_to(args.sweep_dir)}: {line}", file=sys.stderr if isinstance(outcome, str) else sys.stdout)
    if not args.no_report:
        report = write_report(args.sweep_dir)
        print(f"report: {report}")


if __name__ == "__main__":
    main()
