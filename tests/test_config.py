"""Configs are strict: every bad input stops before any compute with one line naming the problem."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import check_command_line
from bench.core.config import ConfigError, build_model, build_task, validate
from tasks import TASKS
from variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent
# Task choices that are a registered task with some options set (conf/task/<name>.yaml, e.g. copy_variable)
TASK_PRESETS = [path.stem for path in (REPO / "conf" / "task").glob("*.yaml")]


def test_defaults_compose_and_validate(make_config):
    cfg = make_config()
    assert cfg.variant.name == "standard" and cfg.task.name == "copy"
    validate(cfg)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_variant_and_task_builds(make_config, variant, task):
    cfg = make_config(f"variant={variant}", f"task={task}")
    validate(cfg)
    assert build_model(cfg).max_seq_len == cfg.model.max_seq_len
    assert build_task(cfg).name == task


def test_task_options_are_config_keys(make_config):
    cfg = make_config("task=copy", "task.variable_length=true", "task.seq_len=64")
    assert build_task(cfg).variable_length and build_task(cfg).seq_len == 64


def test_the_default_sweep_covers_three_variants_both_tasks_and_three_seeds():
    assert check_command_line([], multirun=True) == 3 * 2 * 3


def test_command_line_sweep_values_replace_the_default_sweep():
    assert check_command_line(["variant=standard", "task=copy,induction", "seed=0,1,2"], multirun=True) == 6


BAD_INPUTS = [
    (["variant=nonexistent"], f"unknown variant 'nonexistent'; allowed: {', '.join(sorted(VARIANTS))}$"),
    (["task=nope"], f"unknown task 'nope'; allowed: {', '.join(sorted({*TASKS, *TASK_PRESETS}))}"),
    (["train.step=5"], "unknown config key 'train.step'; allowed keys in 'train': steps, lr,"),
    (["trian.steps=5"], "unknown config key 'trian.steps'; allowed keys: variant, task, seed"),
    (["variant.rope_bse=2"], "unknown config key 'variant.rope_bse'; allowed keys in 'variant': name, rope_base"),
    (["+train.extra=1"], "adds or deletes a config key, which is not allowed"),
    (["train.steps=abc"], "could not be converted to Integer"),
    (["model.d_model=65"], "model.d_model=65 is not divisible by model.n_heads=4; allowed n_heads: 1, 5, 13, 65"),
    (["task.seq_len=1024"], "task.seq_len=1024 exceeds the model's context model.max_seq_len=512"),
    (["task.vocab_size=1"], "task.vocab_size=1 is too small for task 'copy'"),
    (["task=induction", "task.vocab_size=2"], "needs at least 3"),
    (["train.steps=0"], r"train.steps=0 is out of range; allowed: \[1, 1000000000\]"),
    (["train.steps=-3"], "train.steps=-3 is out of range"),
    (["train.lr=0"], r"train.lr=0.0 is out of range; allowed: \(0, 10\]"),
    (["train.batch_size=0"], r"train.batch_size=0 is out of range; allowed: \[1, 1048576\]"),
    (["train.target_accuracy=1.5"], r"train.target_accuracy=1.5 is out of range; allowed: \(0, 1\]"),
    (["device=tpu"], "allowed: cpu, cuda, cuda:<index>"),
    (["task=copy,induction"], "is a sweep; add -m"),
    (["task.seq_len=200"], r"task.seq_len=200 × 4 \(the longest of analysis.length_generalisation.factors\) exceeds model.max_seq_len=512"),
    (["analysis.length_generalisation.factors=[0,2]"], r"analysis.length_generalisation.factors=\[0, 2\] is out of range; allowed: \[1, 64\]"),
    (["analysis.length_generalisation.factors=[]"], "must name at least one factor"),
    (["task=copy", "task.variable_length=true", "task.min_len=9", "task.max_len=4"], "1 <= min_len <= max_len"),
]


@pytest.mark.parametrize("overrides, message", BAD_INPUTS)
def test_bad_input_is_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as raised:
        check_command_line(overrides, multirun=False)
    assert "\n" not in str(raised.value)


def test_a_bad_job_in_a_sweep_is_named_before_anything_runs():
    with pytest.raises(ConfigError, match=r"job '.*model.n_heads=3': model.d_model=64 is not divisible"):
        check_command_line(["model.n_heads=4,3"], multirun=True)
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        check_command_line(["task=copy,nope"], multirun=True)


@pytest.mark.parametrize("arguments", [["train.stpes=5"], ["-m", "variant=standard,nonexistent", "seed=0,1"]])
def test_bad_command_exits_non_zero_with_one_line_and_writes_nothing(tmp_path, arguments):
    completed = subprocess.run(
        [sys.executable, "-m", "bench", *arguments, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0 and completed.stderr.startswith("bench: error: ")
    assert not list(tmp_path.rglob("result.json"))
