"""Typed, strict configuration: the schema, the variant, task and analysis config groups, and
validation.

Every registered variant and task becomes an option of the ``variant`` / ``task`` config group,
and every registered analysis a node ``analysis.<name>``, with one typed field per keyword-only
constructor option, so ``variant=<name>`` needs no YAML and a misspelt key or a value of the
wrong type is an error, never silently ignored. A numeric key carries its allowed range: the
schema's fields through ``ranged``, a plug-in's options through ``Annotated[type, Range(...)]``;
every float must be finite. Validation builds nothing in proportion to the config.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
from torch import nn
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

import analyses
import tasks
import variants
from bench import CONF_DIR, CONFIG_NAME, ConfigError
from bench.core.arithmetic import flush_subnormals
from bench.core.memory import estimate_memory, memory_limit, size
from bench.core.model import Transformer
from plugin import Range
from bench.external import load_external
from bench.trackers import LOGGERS, check_logger
from plugin.compat import forget_stored_config

flush_subnormals()  # before any computation starts torch's worker threads: see bench/core/arithmetic.py

# Options of the model that the transformer passes to every variant, not config of the variant.
VARIANT_ARGUMENTS = ("d_model", "n_heads", "max_seq_len")
# The longest context the framework accepts: explicit attention paths and rotary tables grow with it.
MAX_CONTEXT = 65536
MAX_SEED = 2**63 - 1
ACTIVATIONS = ("gelu", "relu")
SCHEDULES = ("cosine", "wsd")


def ranged(default: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False, high_open: bool = False, reason: str = "") -> Any:
    """A dataclass field with an allowed range, checked by `validate`."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open, reason)})


def choice(default: str, allowed: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"choices": allowed})


@dataclass
class ModelConfig:
    n_layers: int = ranged(2, 1, 256)
    d_model: int = ranged(64, 1, 65536)
    n_heads: int = ranged(4, 1, 65536)
    max_seq_len: int = ranged(512, 2, MAX_CONTEXT, reason="attention weights and rotary tables grow with the context; longer ones are beyond the explicit attention paths on one machine")
    mlp: bool = False
    mlp_width: int = ranged(0, 0, 1 << 20)  # 0: 4 * d_model
    mlp_activation: str = choice("gelu", ACTIVATIONS)
    layer_norm: bool = False
    learned_positions: bool = False


@dataclass
class TrainConfig:
    steps: int = ranged(2000, 1, 10**9)
    lr: float = ranged(3e-3, 0, 10, low_open=True)
    batch_size: int = ranged(32, 1, 1 << 20)
    weight_decay: float = ranged(0.01, 0, 100)
    beta1: float = ranged(0.9, 0, 1, high_open=True)
    beta2: float = ranged(0.999, 0, 1, high_open=True)
    warmup_steps: int = ranged(100, 0, 10**9)
    min_lr_ratio: float = ranged(0.1, 0, 1)
    # wsd (warmup-stable-decay): warm-up, a constant rate, then a linear decay over the last
    # decay_fraction of the budget, a budget that can be extended since the decay starts only once
    # the run is no longer improving. cosine: warm-up, then cosine decay to min_lr_ratio at `steps`.
    schedule: str = choice("wsd", SCHEDULES)
    decay_fraction: float = ranged(0.2, 0, 1, low_open=True, high_open=True)
    # The most a run still improving at `steps` may train, as a multiple of `steps` (wsd only): its
    # budget doubles, up to this, while validation loss still falls by more than plateau_drop over
    # plateau_window steps. 1: the budget is `steps`, never extended.
    max_extension: int = ranged(4, 1, 1000)
    # A run is "still improving" when its validation loss fell by more than this share over the last
    # plateau_window steps, and "converged" otherwise (every run records which, or "reached target").
    plateau_window: int = ranged(500, 1, 10**9)
    plateau_drop: float = ranged(0.05, 0, 1, low_open=True, high_open=True)
    grad_clip: float = ranged(1.0, 0, 1e6)  # 0: no clipping
    grokfast_lambda: float = ranged(0.0, 0, 100)  # 0: off; > 0 adds this times the gradients' EMA (Grokfast)
    grokfast_alpha: float = ranged(0.98, 0, 1, high_open=True)  # the EMA's decay
    eval_every: int = ranged(100, 1, 10**9)
    eval_batches: int = ranged(4, 1, 10**5)
    target_accuracy: Optional[float] = ranged(0.99, 0, 1, low_open=True)  # null: no early stop
    target_hold: int = ranged(2, 1, 10**6)
    num_threads: int = ranged(0, 0, 4096)  # 0: the cores shared among the jobs run at once
    progress: bool = True
    # torch.compile the training step's forward (and so its backward); off by default: on this CPU no
    # variant's default job gained 10% end to end with compile time counted (README, "Speed")
    compile: bool = False


@dataclass
class LoggerConfig:
    # an experiment tracker each job's curve, config and final metrics go to (bench/trackers.py); an optional extra
    name: str = choice("none", LOGGERS)
    dir: str = ""  # where its files go ("": under the sweep's directory)
    tracking_uri: str = ""  # mlflow: a server or store ("": a file store under the sweep)
    project: str = "attention-bench"  # wandb


@dataclass
class ProtocolConfig:
    """How the report turns runs into numbers; it changes no run (left out of the config hash)."""

    # Config keys over which the report picks, per setting x task, the value with the best mean
    # validation accuracy (e.g. [train.lr, train.weight_decay] for MAD's grid).
    select_on: list[str] = field(default_factory=lambda: ["train.lr"])
    # A summary score for the leaderboard: none, or mad (the mean over a task's difficulty settings
    # of the selected test accuracy, averaged over tasks; MAD-lab, Poli et al. 2024).
    score: str = choice("none", ("none", "mad"))


@dataclass
class Config:
    variant: Any = MISSING
    task: Any = MISSING
    seed: int = ranged(0, 0, MAX_SEED, reason="torch's generators take 64-bit seeds")
    device: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: Any = MISSING  # analysis.<name>.<option>, one node per registered analysis
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    memory_limit_gb: float = ranged(0.0, 0, 1e9)  # 0: the device's memory; a job estimated above it is refused
    resume: bool = True  # skip a job whose result.json completed with the same config and code
    rerun_failed: bool = False  # with resume, run again jobs recorded as failed or diverged
    # the user's plug-in modules (dotted names or .py files), imported when the command starts (bench/external.py)
    plugins: List[str] = field(default_factory=list)


# Keys that steer how a job runs, not what it computes: left out of the config hash (and of the
# job directory names, see hydra.job.config.override_dirname.exclude_keys in conf/config.yaml).
RUN_CONTROL_KEYS = ("resume", "rerun_failed", "train.progress", "train.num_threads", "memory_limit_gb", "plugins", "logger")


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config without its run-control keys, analysis options and report protocol: what
    training depends on (each analysis's output records its own options)."""
    identity = copy.deepcopy(config)
    identity.pop("analysis", None)
    identity.pop("protocol", None)
    for key in RUN_CONTROL_KEYS:
        *parents, leaf = key.split(".")
        node = identity
        for parent in parents:
            node = node[parent]
        node.pop(leaf)
    return identity


# The schema dataclass of every plug-in's options, by config group and name: their fields' ranges.
SCHEMAS: dict[tuple[str, str], type] = {}
# The name under which SCHEMAS keeps the whole analysis section (one node per analysis).
SECTION = ""


def options_schema(cls: type, skip: tuple[str, ...] = (), with_name: bool = True) -> type:
    """A dataclass with `name` (unless with_name is false) plus one typed field per keyword-only
    option of cls.__init__; an option annotated Annotated[type, Range(...)] keeps its range."""
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=cls.name))] if with_name else []
    for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if parameter.name in skip:
            continue
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or parameter.default is inspect.Parameter.empty:
            raise TypeError(
                f"{cls.__name__}.__init__: option '{parameter.name}' must be keyword-only (after `*`) "
                "with a default, so that it can be a config key"
            )
        hint, metadata = hints[parameter.name], {}
        if typing.get_origin(hint) is typing.Annotated:
            hint, *extras = typing.get_args(hint)
            metadata = {"range": extra for extra in extras if isinstance(extra, Range)}
        if typing.get_origin(hint) in (tuple, list):  # a sequence option is a list in the config
            hint, default = list[typing.get_args(hint)[0]], parameter.default
            fields.append((parameter.name, hint, field(default_factory=lambda d=default: list(d), metadata=metadata)))
        else:
            fields.append((parameter.name, hint, field(default=parameter.default, metadata=metadata)))
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields)


def analysis_schema() -> type:
    """One node per registered analysis, holding its options."""
    fields = []
    for name, analysis in analyses.ANALYSES.items():
        SCHEMAS["analysis", name] = schema = options_schema(analysis, with_name=False)
        fields.append((name, schema, field(default_factory=schema)))
    return dataclasses.make_dataclass("AnalysisConfig", fields)


# The plug-ins the ConfigStore holds now, as registries_fingerprint gives them.
REGISTERED: tuple = ()


def registries_fingerprint() -> tuple:
    """Which class each plug-in name stands for, in every registry (the classes themselves: held
    here, none is collected and its address reused by another)."""
    return tuple(tuple(registry.items()) for registry in (variants.VARIANTS, tasks.TASKS, analyses.ANALYSES))


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore, its variant and task groups matching the registries
    exactly: a plug-in taken out of its registry stops being a choice, and no sweep's glob expands to it.

    Called when a command starts (and by compose_config), never at import: importing a module has
    no effect on Hydra's state. Registries unchanged since the last call leave the store as it is."""
    global REGISTERED
    load_external()  # the user's plug-ins named in the environment or by installed packages
    registered = registries_fingerprint()
    if registered == REGISTERED:
        return
    store = ConfigStore.instance()
    store.store(name="bench_schema", node=Config)
    SCHEMAS["analysis", SECTION] = schema = analysis_schema()
    store.store(name="analysis_schema", node=schema, package="analysis")
    # Run-control keys name no job directory: written here once, from RUN_CONTROL_KEYS.
    store.store(name="run_control", node={"hydra": {"job": {"config": {"override_dirname": {"exclude_keys": list(RUN_CONTROL_KEYS)}}}}})
    for group, registry, skip in (("variant", variants.VARIANTS, VARIANT_ARGUMENTS), ("task", tasks.TASKS, ())):
        for stale in [name for kind, name in SCHEMAS if kind == group and name not in registry]:
            forget_stored_config(group, stale)
            del SCHEMAS[group, stale]
        for name, plugin in registry.items():
            SCHEMAS[group, name] = schema = options_schema(plugin, skip=skip)
            store.store(group=group, name=name, node=schema)
    REGISTERED = registered


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = CONFIG_NAME) -> DictConfig:
    """The job config that `python -m bench <overrides>` would run, composed from the project's
    config directory with the plug-ins registered as they are now."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def options(node: DictConfig) -> dict[str, Any]:
    """The constructor options of a variant, task or analysis config node (everything but its name)."""
    return {key: value for key, value in OmegaConf.to_container(node).items() if key != "name"}


def build_task(cfg: DictConfig, **changes: Any) -> tasks.Task:
    """The run's task, with `changes` to its options (e.g. seq_len for a longer evaluation)."""
    return tasks.TASKS[cfg.task.name](**{**options(cfg.task), **changes})


def build_model(cfg: DictConfig) -> Transformer:
    return Transformer(
        variants.VARIANTS[cfg.variant.name], options(cfg.variant), vocab_size=cfg.task.vocab_size, **cfg.model
    )


def build_analyses(cfg: DictConfig, names: list[str] | None = None) -> dict[str, analyses.Analysis]:
    """The registered analyses (or those named), each built with its options from the config."""
    return {name: analyses.ANALYSES[name](**options(cfg.analysis[name])) for name in names or analyses.ANALYSES}


# The float type the model computes in: an option it cannot hold would be infinite or zero there.
FLOAT32 = torch.finfo(torch.float32)


def declared_type(cfg: DictConfig, key: str) -> Any:
    """The type the schemas declare for a dotted key of cfg (a dataclass for a section); None for
    a key they do not know."""
    parts = key.split(".")
    if parts[0] in ("variant", "task") and len(parts) > 1:
        schema, rest = SCHEMAS.get((parts[0], cfg[parts[0]].name)), parts[1:]
    elif parts[0] == "analysis":
        schema, rest = SCHEMAS.get(("analysis", parts[1] if len(parts) > 1 else SECTION)), parts[2:]
    else:
        schema, rest = Config, parts
    for part in rest:
        hints = typing.get_type_hints(schema) if dataclasses.is_dataclass(schema) else {}
        if part not in hints:
            return None
        schema = hints[part]
    return schema


def check_fields(node: DictConfig, schema: type, prefix: str) -> None:
    """Every float finite, every ranged number in range, every choice allowed, recursively."""
    types = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        key, value = f"{prefix}.{spec.name}" if prefix else spec.name, node[spec.name]
        if dataclasses.is_dataclass(types[spec.name]) and isinstance(value, DictConfig):
            check_fields(value, types[spec.name], key)
            continue
        if isinstance(value, float) and not math.isfinite(value):
            allowed = spec.metadata["range"].describe() if "range" in spec.metadata else "a finite number"
            raise ConfigError(f"{key}={value} is not a finite number; allowed: {allowed}")
        if isinstance(value, float) and not (value == 0 or FLOAT32.tiny <= abs(value) <= FLOAT32.max):
            raise ConfigError(f"{key}={value} is beyond float32, which the model computes in; allowed: 0 or a magnitude in [{FLOAT32.tiny:.3g}, {FLOAT32.max:.3g}]")
        if "range" in spec.metadata and value is not None:
            for item in value if isinstance(value, ListConfig) else [value]:
                if not spec.metadata["range"].holds(item):
                    raise ConfigError(f"{key}={value} is out of range; allowed: {spec.metadata['range'].describe()}")
        if "choices" in spec.metadata and value not in spec.metadata["choices"]:
            raise ConfigError(f"{key}='{value}' is unknown; allowed: {', '.join(spec.metadata['choices'])}")


# The keys that drive each part of a job's memory, named when a job is refused for it.
MEMORY_KEYS = {
    "weights_and_state": "model.d_model, model.n_layers, model.mlp_width, task.vocab_size",
    "activations": "train.batch_size, task.seq_len, task.vocab_size, model.n_layers, model.d_model, model.n_heads",
    "data": "task.train_examples, task.seq_len",
}


def check_memory(cfg: DictConfig, model: nn.Module, task: tasks.Task) -> None:
    """Refuse a job whose estimated memory (bench.core.memory) exceeds the device's or memory_limit_gb."""
    estimate = estimate_memory(cfg, model, task)
    limit, source = memory_limit(cfg)
    if estimate.total > limit:
        largest = max(MEMORY_KEYS, key=lambda part: getattr(estimate, part))
        raise ConfigError(f"the job needs {estimate.describe()}, over the {size(limit)} of {source}; "
                          f"the keys that drive the largest part: {MEMORY_KEYS[largest]} (or set memory_limit_gb)")  # fmt: skip


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for a config that cannot run, before any compute."""
    if not SCHEMAS:  # a launcher's worker process gets its config composed, and registers on first use
        register_configs()
    check_fields(cfg, Config, "")
    for group in ("variant", "task"):
        check_fields(cfg[group], SCHEMAS[group, cfg[group].name], group)
    for name in analyses.ANALYSES:
        check_fields(cfg.analysis[name], SCHEMAS["analysis", name], f"analysis.{name}")
    check_device(cfg.device)
    check_logger(cfg.logger)
    for key in cfg.protocol.select_on:
        value = OmegaConf.select(cfg, key)
        if value is None or isinstance(value, (DictConfig, ListConfig)) or key.split(".")[0] not in ("train", "model", "task", "variant"):
            raise ConfigError(f"protocol.select_on names '{key}', which is not a train, model, task or variant key of this config "
                              "(a key with one value, e.g. train.lr)")  # fmt: skip
    if cfg.train.max_extension > 1 and cfg.train.schedule != "wsd":
        raise ConfigError(f"train.max_extension={cfg.train.max_extension} extends a budget, which only train.schedule=wsd can "
                          "(a cosine schedule has already decayed at train.steps); allowed: train.max_extension=1, or train.schedule=wsd")  # fmt: skip
    if cfg.model.learned_positions and not getattr(variants.VARIANTS[cfg.variant.name], "positional_signal", True):
        raise ConfigError(f"variant {cfg.variant.name} is defined without a positional signal, and model.learned_positions=true "
                          "would give it one; allowed: model.learned_positions=false")  # fmt: skip
    if cfg.task.seq_len > cfg.model.max_seq_len:
        raise ConfigError(
            f"task.seq_len={cfg.task.seq_len} exceeds the model's context model.max_seq_len="
            f"{cfg.model.max_seq_len}; allowed: seq_len <= max_seq_len"
        )
    try:
        task = build_task(cfg)  # a pool (task.train_examples) is drawn only when training asks for it
        with torch.device("meta"):  # runs every constructor check without allocating weights
            model = build_model(cfg)
        check_memory(cfg, model, task)
        for analysis in build_analyses(cfg).values():
            analysis.check(cfg)
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
