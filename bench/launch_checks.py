"""Checks of Hydra's own options before anything is written: the directory a run or sweep writes
into, the sweeper's batch size, and the launcher's settings on this machine. Hydra checks these
only when it uses them, after it has made directories, and fails with a traceback or not at all
(joblib takes an unknown backend, or n_jobs below minus the core count, without a word)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench import ConfigError

# Launcher keys that count something, and the least each takes (submitit's, local and SLURM).
LAUNCHER_COUNTS = {"timeout_min": 1, "cpus_per_task": 1, "tasks_per_node": 1, "nodes": 1, "gpus_per_node": 0,
                   "mem_gb": 0, "array_parallelism": 1, "max_num_timeout": 0}  # fmt: skip


def check_launch(hydra: DictConfig, multirun: bool) -> None:
    """Raise ConfigError for a Hydra option that cannot work here."""
    check_output_dir(hydra, "sweep.dir" if multirun else "run.dir")
    if not multirun:
        return
    batch = hydra.sweeper.get("max_batch_size")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ConfigError(f"hydra.sweeper.max_batch_size={batch} is not a positive count; allowed: null (all jobs at once) or >= 1")
    if "bench_sweeper" in str(hydra.sweeper.get("_target_", "")):
        sweeper = OmegaConf.to_container(hydra.sweeper)
        check_tuning(sweeper.get("tune"), sweeper.get("max_extensions"), sweeper.get("tuning_seeds"))
    target = str(hydra.launcher.get("_target_", ""))
    if "joblib" in target:
        check_joblib(hydra.launcher)
    if "submitit" in target:
        check_submitit(hydra.launcher, slurm="Slurm" in target)


def check_output_dir(hydra: DictConfig, key: str) -> None:
    """The run's or sweep's directory can be made: no file stands where it or a folder above it must be."""
    try:
        directory = Path(str(OmegaConf.select(hydra, key)))
    except Exception:  # an interpolation only a running job can resolve (${hydra.job.name}, say): Hydra makes it
        return
    for path in (directory, *directory.absolute().parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"hydra.{key}={directory} cannot be made: {path} is a file, not a folder; name another directory")
            if not os.access(path, os.W_OK | os.X_OK):
                raise ConfigError(f"hydra.{key}={directory} cannot be made: {path} is not writable; name another directory")
            return


def check_joblib(launcher: DictConfig) -> None:
    from joblib.parallel import BACKENDS  # joblib is the launcher's own dependency

    cores = os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs")
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0 or n_jobs < -cores:
        raise ConfigError(f"hydra.launcher.n_jobs={n_jobs} is not a worker count; allowed: 1 to any, or -1 (every core) to -{cores} "
                          f"(every core but {cores - 1}) on this machine's {cores} cores")  # fmt: skip
    backend = launcher.get("backend")
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"hydra.launcher.backend='{backend}' is unknown to joblib; allowed: null (loky), {', '.join(sorted(BACKENDS))}")


def check_submitit(launcher: DictConfig, slurm: bool) -> None:
    if slurm and shutil.which("srun") is None:
        raise ConfigError("the SLURM launcher needs srun, which this machine lacks (no SLURM here); "
                          "allowed here: the default launcher, hydra/launcher=joblib, or hydra/launcher=submitit_local")  # fmt: skip
    for key, least in LAUNCHER_COUNTS.items():
        value: Any = launcher.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < least):
            raise ConfigError(f"hydra.launcher.{key}={value} is out of range; allowed: >= {least}")


def check_config_dir(config_dir: str | None) -> None:
    if config_dir is not None and not Path(config_dir).is_dir():
        raise ConfigError(f"--config-dir {config_dir} is not a directory; name a folder of config files")


def check_modes(args: Any) -> None:
    """Hydra's modes exclude each other; Hydra says so with a traceback."""
    chosen = [flag for flag, on in (("--multirun", args.multirun), ("--cfg", args.cfg), ("--info", args.info),
                                    ("--shell-completion", args.shell_completion), ("--run", getattr(args, "run", False))) if on]  # fmt: skip
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)} cannot be used together (--cfg and --info print and run nothing); choose one")


# How far a tuning grid's successive ratios may differ and still count as log-spaced (3e-4, 1e-3, 3e-3, 1e-2 differ by 10%).
LOG_SPACING = 0.25


def check_tuning(tune: Any, max_extensions: Any, tuning_seeds: Any) -> None:
    """The tuning sweeper's options (hydra.sweeper.tune, max_extensions, tuning_seeds), in one line each."""
    from bench.report.protocol import MIN_GRID  # pandas loads only for a tuning sweep

    for key, values in (tune or {}).items():
        allowed = f"allowed: at least {MIN_GRID} distinct positive numbers, log-spaced (e.g. [3e-4, 1e-3, 3e-3, 1e-2])"
        if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
            raise ConfigError(f"hydra.sweeper.tune.{key}={list(values)} is not a list of numbers; {allowed}")
        grid = sorted(float(value) for value in values)
        if len(set(grid)) < MIN_GRID or grid[0] <= 0 or len(set(grid)) < len(grid):
            raise ConfigError(f"hydra.sweeper.tune.{key}={list(values)} cannot bracket an optimum; {allowed}")
        ratios = [b / a for a, b in zip(grid, grid[1:])]
        if max(ratios) > (1 + LOG_SPACING) * min(ratios):
            raise ConfigError(f"hydra.sweeper.tune.{key}={list(values)} is not log-spaced (ratios {min(ratios):.2f} to {max(ratios):.2f}); {allowed}")
    if not isinstance(max_extensions, int) or isinstance(max_extensions, bool) or max_extensions < 0:
        raise ConfigError(f"hydra.sweeper.max_extensions={max_extensions} is not a count; allowed: an integer >= 0")
    if not isinstance(tuning_seeds, int) or isinstance(tuning_seeds, bool) or tuning_seeds < 1:
        raise ConfigError(f"hydra.sweeper.tuning_seeds={tuning_seeds} is not a count; allowed: an integer >= 1")
