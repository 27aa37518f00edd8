"""The tuning sweeper (``hydra/sweeper=tuning``): a sweep whose learning rate (or any key it is told
to tune) is chosen on validation, on a grid extended until the optimum is bracketed.

    hydra:
      sweeper:
        params: {variant: standard,triple, task: induction, seed: 0,1,2,3,4}
        tune: {train.lr: [3e-4, 1e-3, 3e-3, 1e-2]}   # log-spaced, at least 4 values per key
        max_extensions: 2                             # per key and edge

For every combination of ``params`` other than the seed (a variant x task x difficulty point):

1. *Tune*: run every grid point on the tuning seeds (the first ``tuning_seeds`` seeds).
2. *Bracket*: where the point chosen on validation (bench.report.protocol.tuning_grid: best mean
   validation accuracy over the tuning seeds, then lower validation loss) sits on an edge of a
   key's tried values, try the next value past that edge (one grid step further, in the grid's own
   ratio), and choose again; at most ``max_extensions`` steps past each edge. A choice still on an
   edge then is reported as such ("grid edge"), never as a tuned optimum.
3. *Confirm*: run the remaining seeds at the chosen point.
4. *Second look*: where the chosen point's mean validation accuracy over all seeds falls more than
   SECOND_LOOK_MARGIN below the runner-up's on the tuning seeds (the tuning seed was lucky at the
   chosen rate, typically an aggressive one that tied on validation), run the remaining seeds at the
   runner-up too; of the two, the one with the better mean over all seeds is chosen, and where it
   sits on an edge of the tried range, the next value past that edge is run on every seed (at most
   ``max_extensions`` past each edge). Once: a single seed's ranking is otherwise trusted.

The report chooses by the same rule from the runs alone, so it rebuilds these choices exactly.
Each group goes through the steps at its own pace: the sweeper hands the launcher every group's
next step at once, so one group's confirmations run beside another's extensions, and the sweep
waits at as many step boundaries as its longest group has steps (before, at every step for the
group slowest to finish it). Launchers see lists of overrides only (basic, joblib, submitit/SLURM
all work), and a sweep run again resumes: finished jobs return their recorded result at once and
the same choices follow. (Jobs named by number, hydra.sweep.subdir=${hydra.job.num}, take their
launch order as their directory: a sweep begun before this pacing re-runs on resuming, since its
numbers now name other jobs; jobs named by their overrides, the default, are found again.)
The job's return value (bench.core.job ``objective``) carries validation numbers only; the test
set chooses nothing.

(No ``from __future__ import annotations`` here: Hydra imports plugin modules without registering
them in sys.modules, where dataclasses look string annotations up.)
"""
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pandas as pd
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from bench.cli import directory_name, names_jobs_by_overrides, sweep_values
from bench.core.results import JOBS_FILE, write_json_atomic
from bench.launch_checks import check_tuning
from bench.report.protocol import tuning_grid
from bench.report.records import expected_jobs

log = logging.getLogger(__name__)

SEED_KEY = "seed"
# How far the chosen point's mean validation accuracy over every seed may fall below the runner-up's on
# the tuning seeds before the runner-up is confirmed too: runs stopped early at a target differ in the
# third decimal by when the stop fired, while one seed of five that fails to learn costs 0.15 or more.
SECOND_LOOK_MARGIN = 0.05


@dataclass
class TuningSweeperConf:
    _target_: str = "hydra_plugins.bench_sweeper.tuning_sweeper.TuningSweeper"
    params: Optional[Dict[str, str]] = None
    tune: Dict[str, List[float]] = field(default_factory=lambda: {"train.lr": [3e-4, 1e-3, 3e-3, 1e-2]})
    max_extensions: int = 2
    tuning_seeds: int = 1
    max_batch_size: Optional[int] = None


ConfigStore.instance().store(group="hydra/sweeper", name="tuning", node=TuningSweeperConf, provider="attention-bench")


def extended(values: list[float], low_edge: bool) -> float:
    """The next value past an edge of a sorted, log-spaced grid, one step of its ratio further."""
    ratio = (values[-1] / values[0]) ** (1 / (len(values) - 1))
    return float(f"{(values[0] / ratio if low_edge else values[-1] * ratio):.3g}")


class TuningSweeper(Sweeper):
    def __init__(self, params: Optional[Dict[str, str]], tune: Dict[str, List[float]], max_extensions: int, tuning_seeds: int,
                 max_batch_size: Optional[int]) -> None:  # fmt: skip
        check_tuning(tune, max_extensions, tuning_seeds)
        self.params = dict(params or {})
        self.tune = {key: sorted(float(v) for v in values) for key, values in tune.items()}
        self.max_extensions, self.tuning_seeds, self.max_batch_size = max_extensions, tuning_seeds, max_batch_size
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.job_number = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None, "setup() first"
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        by_key = sweep_values(parser.parse_overrides([f"{key}={value}" for key, value in self.params.items()] + list(arguments)))
        tune = {key: values for key, values in self.tune.items() if key not in by_key}
        for key in set(self.tune) - set(tune):
            log.info("%s is set by the sweep's params or the command line (%s): it is not tuned", key, ", ".join(by_key[key]))
        seeds = [override.split("=", 1)[1] for override in by_key.pop(SEED_KEY, [f"{SEED_KEY}=0"])]
        groups = [list(group) for group in itertools.product(*by_key.values())]
        # with nothing to tune, every seed runs in the first batch: as parallel as the launcher allows
        tuning, confirming = (seeds[: self.tuning_seeds], seeds[self.tuning_seeds :]) if tune else (seeds, [])
        results: Dict[tuple, dict] = {}  # (group index, point, seed) -> the job's objective
        protocols = {g: self.protocol(g, " ".join(group), tune, results, tuning, confirming) for g, group in enumerate(groups)}
        steps = {g: jobs for g in protocols if (jobs := next(protocols[g], None))}  # each unfinished group's next step
        while steps:
            self.launch_jobs([job for jobs in steps.values() for job in jobs], groups, tune, results, parser)
            steps = {g: jobs for g in steps if (jobs := next(protocols[g], None))}
        return [results[job] for job in results]

    def protocol(self, g: int, name: str, tune: Dict[str, List[float]], results: Dict[tuple, dict], tuning: List[str],
                 confirming: List[str]) -> Iterator[List[tuple]]:  # fmt: skip
        """Steps 1 to 4 for group g, as a generator: yields each step's jobs (group, point, seed) and is
        resumed once they have run, their objectives in results."""
        grid, seeds = {key: list(values) for key, values in tune.items()}, [*tuning, *confirming]
        for _ in range(2 * self.max_extensions * len(tune) + 1):
            yield [(g, point, seed) for point in itertools.product(*grid.values()) for seed in tuning]
            chosen, edges = self.choice(g, grid, results, tuning)
            grew = [key for key in edges if self.extend(grid, tune, key, low_edge=chosen[key] == min(grid[key])) is not None]
            for key in grew:
                log.info("%s: %s=%s is on the grid's edge; trying %s", name, key, chosen[key], grid[key])
            if not grew:
                break
        chosen, edges = self.choice(g, grid, results, tuning)
        if chosen is None:
            log.error("%s: every tuning job failed; its other seeds are not run (see the report's failed runs)", name)
            return
        point = tuple(chosen[key] for key in tune)
        log.info("%s: chose %s%s", name, point_text(tune, point) or "(nothing to tune)",
                 f" (on the edge of {', '.join(edges)} at the extension limit)" if edges else "")  # fmt: skip
        if not confirming:
            return
        yield [(g, point, seed) for seed in confirming]
        runner_up = self.runner_up(g, grid, point, results, tuning, seeds)
        if runner_up is None:
            return
        log.info("%s: seeds disagree at %s; confirming the runner-up, %s, on them too", name, point_text(tune, point),
                 point_text(tune, runner_up))  # fmt: skip
        yield [(g, runner_up, seed) for seed in confirming]
        for _ in range(2 * self.max_extensions * len(tune)):
            chosen, edges = self.choice(g, grid, results, seeds)
            further = []  # a choice on every seed that sits on an edge of the tried range: one step further, on every seed
            for key in edges:
                value = self.extend(grid, tune, key, low_edge=chosen[key] == min(grid[key]))
                if value is not None:
                    point = tuple(value if k == key else chosen[k] for k in tune)
                    log.info("%s: %s is on the grid's edge; trying %s on every seed", name, point_text(tune, tuple(chosen.values())),
                             point_text(tune, point))  # fmt: skip
                    further += [(g, point, seed) for seed in seeds]
            if not further:
                break
            yield further
        chosen, edges = self.choice(g, grid, results, seeds)
        log.info("%s: chose %s on every seed%s", name, point_text(tune, tuple(chosen.values())),
                 f" (on the edge of {', '.join(edges)} at the extension limit)" if edges else "")  # fmt: skip

    def launch_jobs(self, jobs: List[tuple], groups: List[List[str]], tune: Dict[str, List[float]], results: Dict[tuple, dict],
                    parser: OverridesParser) -> None:  # fmt: skip
        """Launch the jobs not yet in results, in batches of at most max_batch_size, and record their objectives."""
        todo = [job for job in dict.fromkeys(jobs) if job not in results]
        overrides = [[*groups[g], *(f"{key}={value}" for key, value in zip(tune, point)), f"{SEED_KEY}={seed}"] for g, point, seed in todo]
        self.record_jobs(overrides, parser)
        batch = self.max_batch_size or len(todo) or 1
        for start in range(0, len(todo), batch):
            chunk = overrides[start : start + batch]
            self.validate_batch_is_legal(chunk)
            returns = self.launcher.launch(chunk, initial_job_idx=self.job_number)
            self.job_number += len(chunk)
            for job, job_return in zip(todo[start : start + batch], returns):
                results[job] = returned(job_return)

    def extend(self, grid: Dict[str, List[float]], tune: Dict[str, List[float]], key: str, low_edge: bool) -> Optional[float]:
        """Add the next value past an edge of key's grid (in place) and return it; None at max_extensions past that edge."""
        steps_past = sum(1 for value in grid[key] if value not in tune[key] and (value < min(tune[key])) == low_edge)
        if steps_past >= self.max_extensions:
            return None
        value = extended(grid[key], low_edge)
        grid[key] = sorted([*grid[key], value])
        return value

    def grid_runs(self, g: int, grid: Dict[str, List[float]], results: Dict[tuple, dict], seeds: List[str]) -> pd.DataFrame:
        """Group g's finished jobs on these seeds, one row each: the grid's keys, the seed and the objective."""
        rows = [{**dict(zip(grid, point)), SEED_KEY: seed, **results[(g, point, seed)]}
                for point in itertools.product(*grid.values()) for seed in seeds if (g, point, seed) in results]  # fmt: skip
        return pd.DataFrame(rows, columns=[*grid, SEED_KEY, "status", "validation_accuracy", "validation_loss"]).assign(group=g)

    def choice(self, g: int, grid: Dict[str, List[float]], results: Dict[tuple, dict], seeds: List[str]) -> tuple:
        """The chosen point of group g ({key: value}) and the keys on whose edge it sits."""
        chosen = tuning_grid(self.grid_runs(g, grid, results, seeds), ["group"], list(grid))
        chosen = chosen[chosen["chosen"]]
        if chosen.empty:  # every tuning job failed: nothing was chosen
            return None, []
        best = chosen.iloc[0]
        return {key: float(best[key]) for key in grid}, [key for key in str(best["edge"]).split(",") if key]

    def runner_up(self, g: int, grid: Dict[str, List[float]], point: tuple, results: Dict[tuple, dict], tuning: List[str],
                  seeds: List[str]) -> Optional[tuple]:  # fmt: skip
        """Step 4: the point the tuning seeds would choose without `point`, where `point`'s mean over every
        seed fell more than SECOND_LOOK_MARGIN below that point's on the tuning seeds; None otherwise."""
        def at(runs: pd.DataFrame) -> pd.Series:
            return pd.concat([runs[key] == value for key, value in zip(grid, point)], axis=1).all(axis=1)

        everyone, tuning_runs = self.grid_runs(g, grid, results, seeds), self.grid_runs(g, grid, results, tuning)
        confirmed = tuning_grid(everyone[at(everyone)], ["group"], list(grid))
        ranked = tuning_grid(tuning_runs[~at(tuning_runs)], ["group"], list(grid))
        best = ranked[ranked["chosen"]]
        if confirmed.empty or best.empty:  # every job at the point, or at every other point, failed
            return None
        best = best.iloc[0]
        fell = confirmed["validation_accuracy"].iloc[0] < best["validation_accuracy"] - SECOND_LOOK_MARGIN  # False where either is NaN
        return tuple(float(best[key]) for key in grid) if fell else None

    def record_jobs(self, overrides: List[List[str]], parser: OverridesParser) -> None:
        """Add the jobs about to run to the sweep's jobs.json, so that the report names any left without a result."""
        hydra = self.config.hydra
        if not names_jobs_by_overrides(hydra):
            return
        sweep_dir = Path(str(hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        excluded = set(hydra.job.config.override_dirname.exclude_keys)
        names = {directory_name(job, excluded, parser) for job in overrides}
        write_json_atomic(sweep_dir / JOBS_FILE, sorted(names | set(expected_jobs(sweep_dir) or [])))


def point_text(keys: Dict[str, Any], point: tuple) -> str:
    """'train.lr=0.003' for a grid point's values in the order of its keys."""
    return ", ".join(f"{key}={value:.3g}" for key, value in zip(keys, point))


def returned(job_return: Any) -> dict:
    """The job's objective; a job whose function raised (or that returned nothing) counts as failed."""
    try:
        value = job_return.return_value
    except Exception:  # noqa: BLE001 - Hydra re-raises the job's own exception here
        value = None
    if not isinstance(value, dict) or value.get("status") not in ("completed", "diverged"):
        return {"status": "failed", "validation_accuracy": math.nan, "validation_loss": math.nan}
    return {key: value.get(key) for key in ("status", "validation_accuracy", "validation_loss")}
