"""Configs are strict: every bad input stops before any compute with one line naming the problem."""
from __future__ import annotations

import sys

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from bench.cli import check_command_line, job_override_lists, main
from bench.core.config import CONF_DIR, CONFIG_NAME, ConfigError, build_model, build_task, register_configs, validate
from tasks import TASKS
from variants import VARIANTS, AttentionVariant


def test_defaults_compose_and_validate(make_config):
    cfg = make_config()
    assert cfg.variant.name == "standard" and cfg.task.name == "copy"
    validate(cfg)


# Each variant with the default task and each task with the default variant in the default run;
# every pairing (117 compositions of about 0.1 s each) with the slow tests.
PAIRS = [
    pytest.param(variant, task, marks=[] if task == "copy" or variant == "standard" else [pytest.mark.slow])
    for variant in sorted(VARIANTS)
    for task in sorted(TASKS)
]


@pytest.mark.parametrize(("variant", "task"), PAIRS)
def test_every_variant_and_task_builds(make_config, variant, task):
    cfg = make_config(f"variant={variant}", f"task={task}", *VARIANTS[variant].required_config)
    if cfg.task.seq_len > cfg.model.max_seq_len:  # a constructed circuit's context, shorter than the task's default
        with pytest.raises(ConfigError, match=r"exceeds the model's context model.max_seq_len"):
            validate(cfg)
        return
    validate(cfg)
    assert build_model(cfg).max_seq_len == cfg.model.max_seq_len
    assert build_task(cfg).name == task


def test_a_variant_taken_out_of_the_registry_stops_being_a_choice():
    def variants_a_glob_sweeps() -> set[str]:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            jobs = job_override_lists(["variant=glob(*)", "task=copy", "seed=0"], True, parser, CONFIG_NAME)
        return {override.removeprefix("variant=") for job in jobs for override in job if override.startswith("variant=")}

    class Temporary(AttentionVariant):
        name = "taken_out_again"

    try:
        register_configs()
        assert check_command_line(["variant=taken_out_again"], multirun=False) == 1
        assert "taken_out_again" in variants_a_glob_sweeps()
    finally:
        del VARIANTS["taken_out_again"]
        register_configs()
    with pytest.raises(ConfigError, match="unknown variant 'taken_out_again'; allowed: "):
        check_command_line(["variant=taken_out_again"], multirun=False)
    assert variants_a_glob_sweeps() == set(VARIANTS)


def test_task_options_are_config_keys(make_config):
    cfg = make_config("task=copy", "task.variable_length=true", "task.seq_len=64")
    assert build_task(cfg).variable_length and build_task(cfg).seq_len == 64


def test_the_default_sweep_checks_four_variants_both_tasks_five_seeds_at_every_starting_learning_rate():
    assert check_command_line([], multirun=True) == 4 * 2 * 5 * 4


def test_command_line_sweep_values_replace_the_default_sweep():
    assert check_command_line(["variant=standard", "task=copy,induction", "seed=0,1,2"], multirun=True) == 2 * 3 * 4
    assert check_command_line(["variant=standard", "task=copy,induction", "seed=0,1,2", "train.lr=1e-3"], multirun=True) == 6, "a set rate is not tuned"


def test_a_bad_job_in_a_sweep_is_named_before_anything_runs():
    with pytest.raises(ConfigError, match=r"job '.*model.n_heads=3': model.d_model=64 is not divisible"):
        check_command_line(["model.n_heads=4,3"], multirun=True)
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        check_command_line(["task=copy,nope"], multirun=True)


def test_help_introduces_the_framework_with_every_variant_task_and_three_examples(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench", "--help"])  # in-process; the slow tests start the real `python -m bench`
    main()
    text = capsys.readouterr().out
    assert text.startswith("attention-bench: train pluggable attention variants")
    for name in [*VARIANTS, *TASKS]:
        assert f"\n  {name} " in text
    assert text.count("\n  python -m bench") >= 3
