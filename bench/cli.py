"""`python -m bench`: check the config of every job on the command line, then hand over to Hydra.

Hydra itself composes each job only when it launches it; checking all of them first means a
typo, an unknown variant or an impossible combination stops the command with one line before
any job trains or writes a result. A sweep is any command that Hydra runs in multirun mode:
``-m``, ``hydra.mode=MULTIRUN`` on the command line, or an experiment that sets it.
"""
from __future__ import annotations

import re
import sys

from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import analyses
import tasks
import variants
from bench.core.config import CONF_DIR, CONFIG_NAME, ConfigError, validate
from bench.core.job import main as run_hydra_app

GROUPS = ("variant", "task")
# Config groups outside the defaults list, added with +group=name (e.g. +experiment=mqar, +debug=tiny).
ADDABLE_GROUPS = ("experiment", "debug")
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error, following its cause where it says more."""
    cause = error.__cause__ or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def parse(parser: OverridesParser, overrides: list[str]) -> list:
    try:
        return parser.parse_overrides(overrides)
    except HydraException as error:
        for override in overrides:  # name the one that fails, and its key
            try:
                parser.parse_overrides([override])
            except HydraException:
                key = override.split("=", 1)[0]
                raise ConfigError(
                    f"cannot read '{override}': the value of key '{key}' has characters the command line's grammar does not "
                    f"take unquoted (letters beyond ASCII, or ;$()[]'\" out of place); quote the whole value, e.g. {key}='...'"
                ) from error
        raise ConfigError(f"cannot parse the command line: {first_line(error)}") from error


def hydra_config(overrides: list[str], parser: OverridesParser, config_name: str) -> DictConfig:
    """The hydra node of the config the command composes (its mode, sweeper and launcher)."""
    try:
        return compose(config_name, overrides=overrides, return_hydra_config=True).hydra
    except HydraException as error:
        raise ConfigError(first_line(error)) from error


def job_override_lists(overrides: list[str], multirun: bool, parser: OverridesParser, config_name: str) -> list[list[str]] | None:
    """The overrides of every job the command would launch, expanded as Hydra's basic sweeper does;
    None where another sweeper chooses its own jobs (each job still validates itself)."""
    parsed = parse(parser, overrides)
    job_overrides = [o.input_line for o in parsed if not o.is_hydra_override()]  # group additions included
    if not multirun:
        for override in parsed:
            if override.is_sweep_override() and not override.is_hydra_override():
                raise ConfigError(f"'{override.input_line}' is a sweep; add -m (--multirun) to run one job per value")
        return [job_overrides]
    hydra = hydra_config([o.input_line for o in parsed if o.is_hydra_override() or o.key_or_group in ADDABLE_GROUPS], parser, config_name)
    if hydra.sweeper._target_ != BASIC_SWEEPER:
        return None
    sweep_params = [f"{key}={value}" for key, value in hydra.sweeper.get("params", {}).items()]
    return BasicSweeper.split_arguments(parse(parser, sweep_params + job_overrides), None)[0]


def check_job(overrides: list[str], parser: OverridesParser, config_name: str) -> None:
    parsed = parse(parser, overrides)
    loader = GlobalHydra.instance().config_loader()
    for override in parsed:
        if override.key_or_group in ADDABLE_GROUPS:
            continue  # checked by check_added_groups
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
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as error:  # an interpolation that cannot resolve, e.g. ${oc.env:HOME} for a number
        raise ConfigError(f"cannot resolve the config of '{' '.join(overrides)}': {first_line(error)}") from error
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


def check_added_groups(parsed: list) -> None:
    """+experiment=<name> and +debug=<name> name a file of their group."""
    loader = GlobalHydra.instance().config_loader()
    for override in parsed:
        if override.key_or_group in ADDABLE_GROUPS:
            choices = loader.get_group_options(override.key_or_group)
            if not override.is_add() or override.value() not in choices:
                raise ConfigError(f"'{override.input_line}': choose one with +{override.key_or_group}=<name>; allowed: {', '.join(choices)}")


def is_multirun(overrides: list[str], multirun_flag: bool, parser: OverridesParser, config_name: str) -> bool:
    if multirun_flag:
        return True
    hydra_overrides = [o.input_line for o in parse(parser, overrides) if o.is_hydra_override() or o.key_or_group in ADDABLE_GROUPS]
    return hydra_config(hydra_overrides, parser, config_name).get("mode") == RunMode.MULTIRUN


def check_command_line(overrides: list[str], multirun: bool, config_name: str = CONFIG_NAME) -> int | None:
    """Raise ConfigError for the first job of the command that cannot run; returns the job count
    (None where a sweeper other than Hydra's basic one picks the jobs)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        parsed = parse(parser, overrides)
        check_added_groups(parsed)
        multirun = is_multirun(overrides, multirun, parser, config_name)
        jobs = job_override_lists(overrides, multirun, parser, config_name)
        if jobs is None:
            return None
        if not jobs:
            asked = " ".join(o.input_line for o in parsed if not o.is_hydra_override()) or "the default sweep"
            raise ConfigError(f"the sweep '{asked}' expands to no job; check its globs and value lists")
        for job in jobs:
            try:
                check_job(job, parser, config_name)
            except ConfigError as error:
                if len(jobs) == 1:
                    raise
                raise ConfigError(f"job '{' '.join(job)}': {error}") from error
    return len(jobs)


def sweep_job_names(config: DictConfig) -> list[str] | None:
    """The directory names (as hydra.job.override_dirname makes them) of the jobs that a running
    sweep's config asks for, expanded with today's registry; None where that is not knowable."""
    hydra = config.hydra
    if hydra.sweeper._target_ != BASIC_SWEEPER or OmegaConf.to_container(hydra.sweep).get("subdir") != "${hydra.job.override_dirname}":
        return None
    parser = OverridesParser.create(config_loader=ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR))))
    sweep_params = [f"{key}={value}" for key, value in hydra.sweeper.get("params", {}).items()]
    excluded = set(hydra.job.config.override_dirname.exclude_keys)
    try:
        jobs = BasicSweeper.split_arguments(parser.parse_overrides(sweep_params + list(hydra.overrides.task)), None)[0]
        return [",".join(sorted(o.input_line for o in parser.parse_overrides(job) if o.key_or_group not in excluded)) for job in jobs]
    except HydraException:
        return None


def first_sentence(text: str | None, width: int = 100) -> str:
    """The first sentence of a docstring or of a file's opening comment, on one line of at most `width`."""
    paragraph = []
    for line in (text or "").strip().splitlines():
        line = line.strip().lstrip("#").strip()
        if not line:
            break
        paragraph.append(line)
    sentence = re.split(r"(?<=[a-z0-9)])\. (?=[A-Z])", " ".join(paragraph))[0].rstrip(".")
    return sentence if len(sentence) <= width else sentence[: width - 1].rsplit(" ", 1)[0] + "…"


def introduction() -> str:
    """What `python -m bench --help` prints: what this is, what it can run, and how."""
    def listing(title: str, entries: dict[str, str]) -> list[str]:
        width = max(map(len, entries), default=0)
        return ["", title] + [f"  {name:<{width}}  {line}" for name, line in sorted(entries.items())]

    experiments = {path.stem: first_sentence(path.read_text()) for path in sorted((CONF_DIR / "experiment").glob("*.yaml"))}
    lines = [
        "attention-bench: train pluggable attention variants on generated synthetic tasks, through Hydra runs and",
        "sweeps, and report which attention wins where, and why (accuracy with intervals over seeds, analyses, speed).",
        "",
        "usage: python -m bench [-m] [+experiment=<name>] [key=value ...]",
        *listing("variants (variant=<name>; options variant.<option>=...):", {n: first_sentence(sys.modules[v.__module__].__doc__) for n, v in variants.VARIANTS.items()}),
        *listing("tasks (task=<name>; options task.<option>=...):", {n: first_sentence(sys.modules[t.__module__].__doc__) for n, t in tasks.TASKS.items()}),
        *(listing("experiments (python -m bench -m +experiment=<name>):", experiments) if experiments else []),
        *listing("analyses (run after every job; again with python -m bench.analyze <sweep_dir> analysis=<name>):",
                 {n: a.title for n, a in analyses.ANALYSES.items()}),
        "",
        "examples:",
        "  python -m bench task=induction                                   one run; prints where its result is",
        "  python -m bench -m variant=standard,triple task=copy,induction seed=0,1,2   a sweep of 12 jobs and its report",
        "  python -m bench.report multirun/<sweep>                          rebuild a sweep's report",
        "",
        "every key with its default: python -m bench --cfg job   Hydra's own help: python -m bench --hydra-help",
    ]
    return "\n".join(lines)


def main() -> None:
    args = get_args_parser().parse_args()
    if args.help:
        print(introduction())
        return
    if not (args.hydra_help or args.info or args.shell_completion):
        try:
            check_command_line(args.overrides, args.multirun, args.config_name or CONFIG_NAME)
        except ConfigError as error:
            print(f"bench: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    run_hydra_app()
