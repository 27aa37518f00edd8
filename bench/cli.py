"""`python -m bench`: check the config of every job on the command line, then hand over to Hydra.

Hydra itself composes each job only when it launches it; checking all of them first means a
typo, an unknown variant or an impossible combination stops the command with one line before
any job trains or writes a result.
"""
from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from bench.app import main as run_hydra_app
from bench.config import CONF_DIR, CONFIG_NAME, ConfigError, validate

GROUPS = ("variant", "task")


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error, following its cause where it says more."""
    cause = error.__cause__ or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def job_override_lists(overrides: list[str], multirun: bool, parser: OverridesParser, config_name: str) -> list[list[str]]:
    """The overrides of every job the command would launch, expanded as Hydra's basic sweeper does."""
    parsed = parse(parser, overrides)
    job_overrides = [o.input_line for o in parsed if not o.is_hydra_override()]
    if not multirun:
        for override in parsed:
            if override.is_sweep_override() and not override.is_hydra_override():
                raise ConfigError(f"'{override.input_line}' is a sweep; add -m (--multirun) to run one job per value")
        return [job_overrides]
    hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
    try:
        hydra_config = compose(config_name, overrides=hydra_overrides, return_hydra_config=True).hydra
    except HydraException as error:
        raise ConfigError(first_line(error)) from error
    sweep_params = [f"{key}={value}" for key, value in hydra_config.sweeper.get("params", {}).items()]
    if hydra_config.sweeper._target_ != "hydra._internal.core_plugins.basic_sweeper.BasicSweeper":
        return []  # another sweeper chooses its own jobs; each job still validates itself
    return BasicSweeper.split_arguments(parse(parser, sweep_params + job_overrides), None)[0]


def parse(parser: OverridesParser, overrides: list[str]) -> list:
    try:
        return parser.parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(first_line(error)) from error


def check_job(overrides: list[str], parser: OverridesParser, config_name: str) -> None:
    parsed = parse(parser, overrides)
    loader = GlobalHydra.instance().config_loader()
    for override in parsed:
        if override.is_add() or override.is_force_add() or override.is_delete():
            raise ConfigError(
                f"'{override.input_line}' adds or deletes a config key, which is not allowed; "
                "set an existing key with key=value"
            )
        if override.key_or_group in GROUPS:
            choices = loader.get_group_options(override.key_or_group)
            if override.value() not in choices:
                raise ConfigError(
                    f"unknown {override.key_or_group} '{override.value()}'; allowed: {', '.join(choices)}"
                )
    try:
        cfg = compose(config_name, overrides=overrides)
    except HydraException as error:
        groups_only = [o.input_line for o in parsed if o.key_or_group in GROUPS]
        check_keys_exist(compose(config_name, overrides=groups_only), parsed)
        raise ConfigError(f"invalid value in {' '.join(overrides)}: {first_line(error)}") from error
    validate(cfg)


def check_keys_exist(cfg: DictConfig, parsed: list) -> None:
    for override in parsed:
        key = override.key_or_group
        if key in GROUPS:
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if isinstance(node, DictConfig) and leaf in node:
            continue
        if not isinstance(node, DictConfig):
            parent, node = "", cfg
        where = f" in '{parent}'" if parent else ""
        raise ConfigError(f"unknown config key '{key}'; allowed keys{where}: {', '.join(node.keys())}")


def check_command_line(overrides: list[str], multirun: bool, config_name: str = CONFIG_NAME) -> int:
    """Raise ConfigError for the first job of the command that cannot run; returns the job count."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        jobs = job_override_lists(overrides, multirun, parser, config_name)
        for job in jobs:
            try:
                check_job(job, parser, config_name)
            except ConfigError as error:
                if len(jobs) == 1:
                    raise
                raise ConfigError(f"job '{' '.join(job)}': {error}") from error
    return len(jobs)


def main() -> None:
    args = get_args_parser().parse_args()
    if not (args.help or args.hydra_help or args.info or args.shell_completion):
        try:
            check_command_line(args.overrides, args.multirun, args.config_name or CONFIG_NAME)
        except ConfigError as error:
            print(f"bench: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    run_hydra_app()
