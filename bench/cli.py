"""`python -m bench`: check the config of every job on the command line, then hand over to Hydra.

Hydra itself composes each job only when it launches it; checking all of them first means a
typo, an unknown variant or an impossible combination stops the command with one line before
any job trains or writes a result. A sweep is any command that Hydra runs in multirun mode:
``-m``, ``hydra.mode=MULTIRUN`` on the command line, or an experiment that sets it.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import itertools
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench import CONF_DIR, CONFIG_NAME, ConfigError, first_line
from bench.launch_checks import check_config_dir, check_launch, check_modes
from plugin.compat import BASIC_SWEEPER_TARGET, hydra_argument_parser

if TYPE_CHECKING:
    from bench.core.memory import MemoryEstimate

GROUPS = ("variant", "task", "logger")  # config groups of the defaults list, chosen with group=name
# The project's tuning sweeper (hydra/sweeper=tuning): it starts from a grid it states, and extends it.
TUNING_SWEEPER_TARGET = "hydra_plugins.bench_sweeper.tuning_sweeper.TuningSweeper"
# Config groups outside the defaults list, added with +group=name (e.g. +experiment=mqar, +debug=tiny).
ADDABLE_GROUPS = ("experiment", "debug")


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
    if hydra.sweeper._target_ not in (BASIC_SWEEPER_TARGET, TUNING_SWEEPER_TARGET):
        return None
    sweep_params = [f"{key}={value}" for key, value in hydra.sweeper.get("params", {}).items()]
    if hydra.sweeper._target_ == TUNING_SWEEPER_TARGET:
        sweep_params = sweep_params + tuning_grid_overrides(hydra.sweeper)
    jobs = expand_sweep(parse(parser, sweep_params + job_overrides))
    if hydra.sweeper._target_ == TUNING_SWEEPER_TARGET and jobs:
        set_here = {o.key_or_group for o in parsed} | set(hydra.sweeper.get("params") or {})
        check_tuned_keys_are_selected([key for key in hydra.sweeper.get("tune") or {} if key not in set_here], jobs[0], config_name)
    if names_jobs_by_overrides(hydra):
        check_directory_names(jobs, set(hydra.job.config.override_dirname.exclude_keys), parser)
    return jobs


def check_tuned_keys_are_selected(tuned: list[str], job: list[str], config_name: str) -> None:
    """Every key the sweeper tunes is one the report selects on (protocol.select_on); otherwise the
    report would read each tried value as a setting of its own, each with a single seed."""
    try:
        selected = list(compose(config_name, overrides=job).protocol.select_on)
    except HydraException:
        return  # the job's own check names what is wrong with it
    missing = [key for key in tuned if key not in selected]
    if missing:
        raise ConfigError(f"hydra.sweeper.tune tunes {', '.join(missing)}, which protocol.select_on={selected} does not select on; "
                          f"allowed: add {', '.join(missing)} to protocol.select_on, or set the key instead of tuning it")  # fmt: skip


# The longest file name most file systems take (NAME_MAX of ext4, XFS, APFS, tmpfs), in bytes.
NAME_MAX = 255


def names_jobs_by_overrides(hydra: DictConfig) -> bool:
    """Whether the sweep names each job's directory by its overrides (Hydra's override_dirname)."""
    return OmegaConf.to_container(hydra.sweep).get("subdir") == "${hydra.job.override_dirname}"


def directory_name(job: list[str], excluded: set[str], parser: OverridesParser) -> str:
    """The directory Hydra's override_dirname gives the job: its overrides but the excluded keys, sorted."""
    return ",".join(sorted(o.input_line for o in parser.parse_overrides(job) if o.key_or_group not in excluded))


# Keys whose every value the schema checks on its own (a range): a job that differs from a checked
# one only in these needs no composition of its own, once each of its values has been checked.
GRID_KEYS = ("seed", "train.lr", "train.weight_decay")


def covering_jobs(jobs: list[list[str]]) -> list[list[str]]:
    """The jobs a sweep's check composes: one per setting (its overrides other than the grid keys),
    then more until every value of each grid key is among them (a tuned sweep of 160 jobs is 8)."""
    def is_grid(override: str) -> bool:
        return override.split("=")[0] in GRID_KEYS

    chosen: dict[frozenset[str], list[str]] = {}
    for job in jobs:
        chosen.setdefault(frozenset(o for o in job if not is_grid(o)), job)
    covered = {o for job in chosen.values() for o in job if is_grid(o)}
    for job in jobs:
        missing = {o for o in job if is_grid(o)} - covered
        if missing:
            chosen[frozenset(job)] = job
            covered |= missing
    return list(chosen.values())


def check_directory_names(jobs: list[list[str]], excluded: set[str], parser: OverridesParser) -> None:
    for job in jobs:
        name = directory_name(job, excluded, parser)
        if len(name.encode()) > NAME_MAX:
            raise ConfigError(
                f"a job's directory name, made of its overrides, would be {len(name.encode())} bytes, over the {NAME_MAX} a file "
                "system takes; name jobs by number with hydra.sweep.subdir='${hydra.job.num}', or move settings into an experiment file"
            )


def sweep_values(overrides: list[Override]) -> dict[str, list[str]]:
    """Per key, the 'key=value' overrides a sweep takes (a glob over a config group listed by the
    parser's config loader), a later override of a key replacing an earlier one."""
    by_key: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ConfigError(f"'{override.input_line}' is a {override.value_type.name} sweep, which the basic sweeper cannot expand; list the values")
            by_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            by_key[key] = [f"{key}={override.get_value_element_as_str()}"]
    return by_key


def expand_sweep(overrides: list[Override]) -> list[list[str]]:
    """Every job of a sweep, as Hydra's basic sweeper expands it: the product of each key's values."""
    return [list(job) for job in itertools.product(*sweep_values(overrides).values())]


def tuning_grid_overrides(sweeper: DictConfig) -> list[str]:
    """The tuning sweeper's starting grid as sweep overrides ('train.lr=1e-3,3e-3'), so that the
    command line's check covers every job it starts with (an extension's values are checked by each
    job); a key its params set is not tuned (nor is one the command line sets, which comes later)."""
    params = sweeper.get("params") or {}
    return [f"{key}={','.join(str(value) for value in values)}" for key, values in (sweeper.get("tune") or {}).items() if key not in params]


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
        if override.key_or_group in (f"{group}.name" for group in GROUPS):
            group = override.key_or_group.split(".")[0]
            raise ConfigError(f"'{override.input_line}': a {group}'s name is its choice; choose it with {group}=<name>, allowed: "
                              f"{', '.join(loader.get_group_options(group))}")  # fmt: skip
    from bench.core.config import declared_type, validate  # torch: not for --help

    try:
        cfg = compose(config_name, overrides=overrides)
    except HydraException as error:
        groups_only = [o.input_line for o in parsed if o.key_or_group in GROUPS or o.key_or_group in ADDABLE_GROUPS]
        try:
            chosen = compose(config_name, overrides=groups_only)
        except HydraException as clash:  # e.g. an experiment that sets keys the chosen task lacks
            raise ConfigError(f"'{' '.join(groups_only)}' do not go together: {' '.join(str(clash).split())}") from clash
        check_keys_exist(chosen, parsed)
        raise ConfigError(f"invalid value in {' '.join(overrides)}: {first_line(error)}") from error
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as error:  # an interpolation that cannot resolve, e.g. ${oc.env:HOME} for a number
        raise ConfigError(f"cannot resolve the config of '{' '.join(overrides)}': {first_line(error)}") from error
    for override in parsed:
        check_kind(override, declared_type(cfg, override.key_or_group), cfg)
    validate(cfg)


def check_kind(override: Override, declared: Any, cfg: DictConfig) -> None:
    """A value of the kind its key declares, where the config would convert it silently: a section
    (a group of keys) takes no single value, and a flag only true or false, not 2 or 'yes'."""
    if override.key_or_group in GROUPS or override.key_or_group in ADDABLE_GROUPS or override.is_sweep_override():
        return
    value, node = override.value(), OmegaConf.select(cfg, override.key_or_group)
    if (dataclasses.is_dataclass(declared) or isinstance(node, DictConfig)) and not isinstance(value, dict):
        keys = list(node.keys()) if isinstance(node, DictConfig) else [f.name for f in dataclasses.fields(declared)]
        raise ConfigError(f"'{override.input_line}': {override.key_or_group} is a section of keys, not a value; "
                          f"set one of its keys, e.g. {override.key_or_group}.{keys[0]}=...; allowed keys: {', '.join(keys)}")  # fmt: skip
    if declared is bool and not isinstance(value, bool):
        raise ConfigError(f"'{override.input_line}': {override.key_or_group} is a flag; allowed: true, false")


def check_keys_exist(cfg: DictConfig, parsed: list) -> None:
    for override in parsed:
        key = override.key_or_group
        if key in GROUPS or key in ADDABLE_GROUPS:
            continue
        check_kind(override, None, cfg)  # a section given a value: said as such, not as an unknown key
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if isinstance(node, DictConfig) and leaf in node:
            continue
        if not isinstance(node, DictConfig):
            parent, node = "", cfg
        where = f" in '{parent}'" if parent else ""
        if not node.keys():
            raise ConfigError(f"unknown config key '{key}'; '{parent}' has no options")
        raise ConfigError(f"unknown config key '{key}'; allowed keys{where}: {', '.join(node.keys())}")


def check_added_groups(parsed: list) -> None:
    """+experiment=<name> and +debug=<name> name a file of their group."""
    loader = GlobalHydra.instance().config_loader()
    for override in parsed:
        if override.key_or_group in ADDABLE_GROUPS:
            choices = loader.get_group_options(override.key_or_group)
            if not override.is_add() or override.value() not in choices:
                raise ConfigError(f"'{override.input_line}': choose one with +{override.key_or_group}=<name>; allowed: {', '.join(choices)}")


def check_command_line(overrides: list[str], multirun: bool, config_name: str = CONFIG_NAME) -> int | None:
    """Raise ConfigError for the first job of the command that cannot run; returns the job count
    (None where a sweeper other than Hydra's basic one picks the jobs)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        parsed = parse(parser, overrides)
        check_added_groups(parsed)
        hydra = hydra_config([o.input_line for o in parsed if o.is_hydra_override() or o.key_or_group in ADDABLE_GROUPS], parser, config_name)
        multirun = multirun or hydra.get("mode") == RunMode.MULTIRUN
        check_launch(hydra, multirun)
        jobs = job_override_lists(overrides, multirun, parser, config_name)
        if jobs is None:
            return None
        if not jobs:
            asked = " ".join(o.input_line for o in parsed if not o.is_hydra_override()) or "the default sweep"
            raise ConfigError(f"the sweep '{asked}' expands to no job; check its globs and value lists")
        for job in covering_jobs(jobs):
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
    if hydra.sweeper._target_ != BASIC_SWEEPER_TARGET or not names_jobs_by_overrides(hydra):
        return None
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())  # the running sweep's
    sweep_params = [f"{key}={value}" for key, value in hydra.sweeper.get("params", {}).items()]
    excluded = set(hydra.job.config.override_dirname.exclude_keys)
    try:
        jobs = expand_sweep(parser.parse_overrides(sweep_params + list(hydra.overrides.task)))
        return [directory_name(job, excluded, parser) for job in jobs]
    except (HydraException, ConfigError):
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


def listed_plugins(package: str, attribute: str = "") -> dict[str, str]:
    """The plug-ins a package's files define, read from the source without importing it (importing
    torch alone takes longer than --help may): each class's `name`, with the first sentence of its
    module's docstring, or with its own `attribute` (an analysis's title)."""
    spec = importlib.util.find_spec(package)
    listed = {}
    for path in sorted(Path(spec.submodule_search_locations[0]).glob("*.py")):
        try:
            module = ast.parse(path.read_text())
        except (OSError, SyntaxError):
            continue  # a file that cannot be read: the command that imports it names it
        for cls in (node for node in module.body if isinstance(node, ast.ClassDef)):
            constants = {target.id: node.value.value for node in cls.body if isinstance(node, ast.Assign)
                         for target in node.targets if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)}  # fmt: skip
            if isinstance(constants.get("name"), str):
                listed[constants["name"]] = str(constants.get(attribute)) if attribute else first_sentence(ast.get_docstring(module))
    return listed


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
        *listing("variants (variant=<name>; options variant.<option>=...):", listed_plugins("variants")),
        *listing("tasks (task=<name>; options task.<option>=...):", listed_plugins("tasks")),
        *(listing("experiments (python -m bench -m +experiment=<name>):", experiments) if experiments else []),
        *listing("analyses (run after every job; again with python -m bench.analyze <sweep_dir> analysis=<name>):",
                 listed_plugins("analyses", "title")),
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
    args = hydra_argument_parser().parse_args()
    if args.help:
        print(introduction())
        return
    from bench.core.config import register_configs  # torch and the plug-ins load only past --help
    from bench.core.job import main as run_hydra_app
    from bench.external import PluginImportError, load_external, share_with_workers

    try:
        names = plugin_names(args.overrides)
        load_external(names)
        share_with_workers(names)
    except (ConfigError, PluginImportError) as error:
        refuse(error)
    register_configs()
    if not (args.hydra_help or args.info or args.shell_completion):
        try:
            check_modes(args)
            check_config_dir(args.config_dir)
            check_command_line(args.overrides, args.multirun, args.config_name or CONFIG_NAME)
        except ConfigError as error:
            refuse(error)
    if args.cfg and not args.multirun:
        print(f"# memory estimate: {job_memory(args.overrides).describe()}")
    run_hydra_app()


def refuse(error: Exception) -> NoReturn:
    """Stop the command with the error in one line, even where the input that caused it has a line break."""
    print("bench: error:", str(error).replace("\n", "\\n"), file=sys.stderr)
    raise SystemExit(2) from None


def plugin_names(overrides: list[str]) -> list[str]:
    """The modules a plugins=... override names (one, or a list), a file's path made absolute so that
    a process started elsewhere finds it."""
    for override in overrides:
        if override.split("=", 1)[0].lstrip("+") == "plugins":
            value = parse(OverridesParser.create(), [override])[0].value()
            names = [str(name) for name in (value if isinstance(value, list) else [value])]
            return [str(Path(name).resolve()) if name.endswith(".py") else name for name in names]
    return []


def job_memory(overrides: list[str]) -> MemoryEstimate:
    """The memory estimate of the single job the overrides describe (printed with --cfg)."""
    import torch

    from bench.core.config import build_model, build_task, compose_config
    from bench.core.memory import estimate_memory

    cfg = compose_config([o for o in overrides if not o.startswith("hydra")])
    with torch.device("meta"):
        model = build_model(cfg)
    return estimate_memory(cfg, model, build_task(cfg))
