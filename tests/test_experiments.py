"""Every named experiment (bench/conf/experiment/<name>.yaml) composes, expands to the jobs its header
states, and validates; ``default`` is today's default sweep.

A header states a job count (``# jobs: N``) only where the experiment lists its variants; one that
globs them (``glob(*)``) states its count as a formula, so that adding a variant file edits no
experiment."""
from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from bench.cli import check_job, covering_jobs, job_override_lists
from bench import CONF_DIR, CONFIG_NAME
from bench.core.config import register_configs
from tasks import TASKS

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


def claimed_jobs(name: str) -> int | None:
    """The job count the experiment's header states; None where it globs its variants (a formula)."""
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    header = re.search(r"^# jobs: (.*)$", text, re.MULTILINE)
    assert header, f"bench/conf/experiment/{name}.yaml states no '# jobs:' line"
    count = re.match(r"(\d+)\b", header.group(1))
    globs_variants = re.search(r"^\s*variant:\s*glob\(", text, re.MULTILINE) is not None
    assert (count is None) == globs_variants, f"{name}: a number where the variants glob, or a formula where they are listed"
    return int(count.group(1)) if count else None


def expand(overrides: list[str]) -> list[list[str]]:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        return job_override_lists(overrides, True, parser, CONFIG_NAME)


def without_experiment(job: list[str]) -> frozenset[str]:
    return frozenset(override for override in job if not override.startswith("+experiment="))


def test_there_are_the_named_experiments_of_this_issue():
    assert {"default", "mqar", "mad"} <= set(EXPERIMENTS)


# The larger experiments (72 to 288 jobs; 3 to 8 s each to validate) with the slow tests.
LARGE_EXPERIMENTS = ("mad", "mqar", "zoo")


def starting_jobs(jobs: list[list[str]], tuned: list[str]) -> int:
    """The jobs the tuning sweeper starts with, of the checked ones (every tuned value x every seed):
    each grid point on the first seed, then each other seed once, per combination of the rest."""
    def key(override: str) -> str:
        return override.split("=", 1)[0]

    groups = {frozenset(o for o in job if key(o) != "seed" and key(o) not in tuned) for job in jobs}
    grid = {tuple(o for o in job if key(o) in tuned) for job in jobs}
    seeds = {o for job in jobs for o in job if key(o) == "seed"}
    return len(groups) * (len(grid) + len(seeds) - 1) if tuned else len(jobs)


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name in LARGE_EXPERIMENTS else []) for name in EXPERIMENTS])
def test_each_experiment_expands_to_the_jobs_it_claims_and_its_settings_validate(name):
    jobs = expand([f"+experiment={name}"])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        sweeper = compose(CONFIG_NAME, overrides=[f"+experiment={name}"], return_hydra_config=True).hydra.sweeper
    tuned = [key for key in sweeper.get("tune") or {} if key not in (sweeper.get("params") or {})]
    assert jobs and claimed_jobs(name) in (None, starting_jobs(jobs, tuned))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        for job in covering_jobs(jobs):
            check_job(job, parser, CONFIG_NAME)


def test_default_is_todays_default_sweep():
    named = {without_experiment(job) for job in expand(["+experiment=default"])}
    assert named == {frozenset(job) for job in expand([])} and len(named) == 4 * 2 * 5 * 4


def test_mad_selects_over_learning_rate_and_weight_decay_and_scores_mad(make_config):
    cfg = make_config("+experiment=mad")
    assert list(cfg.protocol.select_on) == ["train.lr", "train.weight_decay"] and cfg.protocol.score == "mad"
    jobs = expand(["+experiment=mad"])
    grid = {tuple(sorted(o for o in job if o.startswith(("train.lr=", "train.weight_decay=")))) for job in jobs}
    assert len(grid) >= 4, "a learning rate x weight decay grid"


def test_mqar_sweeps_sequence_length_and_pairs():
    jobs = expand(["+experiment=mqar"])
    assert {o for job in jobs for o in job if o.startswith("task=")} == {"task=assoc_recall"}
    assert len({o for job in jobs for o in job if o.startswith("task.seq_len=")}) >= 2
    assert len({o for job in jobs for o in job if o.startswith("task.num_kv_pairs=")}) >= 3


MAD_SETTINGS = sorted(path.stem for path in (CONF_DIR / "task").glob("mad_*.yaml"))


@pytest.mark.parametrize("name", MAD_SETTINGS)
def test_each_mad_setting_is_a_baseline_or_moves_one_difficulty_axis_of_it(make_config, name):
    task = make_config(f"task={name}").task
    baseline_name = f"mad_{task.name}"
    if name == baseline_name:
        return
    baseline = make_config(f"task={baseline_name}").task
    changed = {key for key in task if task[key] != baseline[key]}
    axis, value = name.removeprefix(f"{baseline_name}_").rsplit("_", 1)
    assert changed == {axis} and str(task[axis]) == value
    assert axis in TASKS[task.name].difficulty_axes


def test_every_difficulty_axis_of_each_mad_task_has_a_change():
    baselines = [name for name in MAD_SETTINGS if name.removeprefix("mad_") in TASKS]
    assert len(baselines) == 4
    for baseline in baselines:
        axes = {name.removeprefix(f"{baseline}_").rsplit("_", 1)[0] for name in MAD_SETTINGS if name.startswith(f"{baseline}_")}
        assert axes == set(TASKS[baseline.removeprefix("mad_")].difficulty_axes), baseline
