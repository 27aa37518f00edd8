"""Typed, strict configuration: the schema, the variant and task config groups, and validation.

Every registered variant and task becomes an option of the ``variant`` / ``task`` config group,
with one typed field per keyword-only constructor option, so ``variant=<name>`` needs no YAML
and a misspelt key or a value of the wrong type is an error, never silently ignored.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

import tasks
import variants
from bench.model import Transformer

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CONFIG_NAME = "config"
# Options of the model that the transformer passes to every variant, not config of the variant.
VARIANT_ARGUMENTS = ("d_model", "n_heads", "max_seq_len")


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the problem and the fix."""


@dataclass
class ModelConfig:
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    max_seq_len: int = 512
    mlp: bool = False
    layer_norm: bool = False
    learned_positions: bool = False


@dataclass
class TrainConfig:
    steps: int = 2000
    lr: float = 3e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 4
    target_accuracy: Optional[float] = 0.99
    target_hold: int = 2
    num_threads: int = 0
    progress: bool = True


@dataclass
class AnalysisConfig:
    length_factors: list[int] = field(default_factory=lambda: [1, 2, 4])
    attention_positions: int = 64


@dataclass
class Config:
    variant: Any = MISSING
    task: Any = MISSING
    seed: int = 0
    device: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    resume: bool = True  # skip a job whose result.json completed with the same config
    rerun_failed: bool = False  # with resume, run again jobs recorded as failed or diverged


# Keys that steer how a job runs, not what it computes: left out of the config hash (and of the
# job directory names, see hydra.job.config.override_dirname.exclude_keys in conf/config.yaml).
RUN_CONTROL_KEYS = ("resume", "rerun_failed", "train.progress", "train.num_threads")


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without its run-control keys: what a job's result depends on."""
    identity = copy.deepcopy(config)
    for key in RUN_CONTROL_KEYS:
        *parents, leaf = key.split(".")
        node = identity
        for parent in parents:
            node = node[parent]
        node.pop(leaf)
    return identity


def options_schema(cls: type, skip: tuple[str, ...] = ()) -> type:
    """A dataclass with `name` plus one typed field per keyword-only option of cls.__init__."""
    hints = typing.get_type_hints(cls.__init__)
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=cls.name))]
    for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if parameter.name in skip:
            continue
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or parameter.default is inspect.Parameter.empty:
            raise TypeError(
                f"{cls.__name__}.__init__: option '{parameter.name}' must be keyword-only (after `*`) "
                "with a default, so that it can be a config key"
            )
        fields.append((parameter.name, hints[parameter.name], field(default=parameter.default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="bench_schema", node=Config)
    for name, variant in variants.VARIANTS.items():
        store.store(group="variant", name=name, node=options_schema(variant, skip=VARIANT_ARGUMENTS))
    for name, task in tasks.TASKS.items():
        store.store(group="task", name=name, node=options_schema(task))


register_configs()


def options(node: DictConfig) -> dict[str, Any]:
    """The constructor options of a variant or task config node (everything but its name)."""
    return {key: value for key, value in node.items() if key != "name"}


def build_task(cfg: DictConfig) -> tasks.Task:
    return tasks.TASKS[cfg.task.name](**options(cfg.task))


def build_model(cfg: DictConfig) -> Transformer:
    return Transformer(
        variants.VARIANTS[cfg.variant.name], options(cfg.variant), vocab_size=cfg.task.vocab_size, **cfg.model
    )


def check_positive(section: DictConfig, prefix: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        if not section[key] > 0:
            raise ConfigError(f"{prefix}.{key}={section[key]} must be positive")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for a config that cannot run, before any compute."""
    check_positive(cfg.train, "train", ("steps", "lr", "batch_size", "eval_every", "eval_batches", "target_hold"))
    check_positive(cfg.model, "model", ("n_layers", "d_model", "n_heads", "max_seq_len"))
    target = cfg.train.target_accuracy
    if target is not None and not 0 < target <= 1:
        raise ConfigError(f"train.target_accuracy={target} must be in (0, 1], or null for no early stop")
    for key in ("warmup_steps", "num_threads", "weight_decay", "grad_clip"):
        if cfg.train[key] < 0:
            raise ConfigError(f"train.{key}={cfg.train[key]} must be zero or positive")
    if not 0 <= cfg.train.min_lr_ratio <= 1:
        raise ConfigError(f"train.min_lr_ratio={cfg.train.min_lr_ratio} must be in [0, 1]")
    check_device(cfg.device)
    if cfg.task.seq_len > cfg.model.max_seq_len:
        raise ConfigError(
            f"task.seq_len={cfg.task.seq_len} exceeds the model's context model.max_seq_len="
            f"{cfg.model.max_seq_len}; allowed: seq_len <= max_seq_len"
        )
    factors = cfg.analysis.length_factors
    if not factors or min(factors) < 1:
        raise ConfigError(f"analysis.length_factors={list(factors)} must be a non-empty list of positive integers")
    if cfg.task.seq_len * max(factors) > cfg.model.max_seq_len:
        raise ConfigError(
            f"task.seq_len={cfg.task.seq_len} × {max(factors)} (the longest of analysis.length_factors) exceeds "
            f"model.max_seq_len={cfg.model.max_seq_len}; allowed: seq_len × factor <= max_seq_len"
        )
    check_positive(cfg.analysis, "analysis", ("attention_positions",))
    try:
        for factor in factors:
            tasks.TASKS[cfg.task.name](**{**options(cfg.task), "seq_len": factor * cfg.task.seq_len})
        with torch.device("meta"):  # runs every constructor check without allocating weights
            build_model(cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"device='{device}' is not a device; allowed: cpu, cuda, cuda:<index>") from error
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"device='{device}' is not supported; allowed: cpu, cuda, cuda:<index>")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device='{device}' was asked for but CUDA is not available here; allowed: cpu")
