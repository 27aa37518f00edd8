"""Plug-ins from the user's own code: a variant, task, analysis or report section defined in a module
outside this repository joins its registry when that module is imported, with nothing edited here.

Three ways to name such modules, each a dotted module name (``my_lab.attention``) or a path to a
Python file (``./kerple.py``):

    python -m bench plugins=[my_lab.attention,./kerple.py] variant=kerple_log     # the command line
    ATTENTION_BENCH_PLUGINS=my_lab.attention,./kerple.py python -m pytest ...    # the environment
    [project.entry-points."attention_bench.plugins"]                              # an installed package
    my_attention = "my_lab.attention"

The command line puts its modules into the environment, so the processes a launcher starts (joblib's
workers, a SLURM job) import them too. A module that cannot be imported stops the command with one
line naming it (PluginImportError): a sweep over a variant that silently went missing would run
nothing, or the wrong thing.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

PLUGINS_VARIABLE = "ATTENTION_BENCH_PLUGINS"
ENTRY_POINT_GROUP = "attention_bench.plugins"
# The user's modules imported so far, by the name they were given.
LOADED: dict[str, ModuleType] = {}


class PluginImportError(ImportError):
    """A user's plug-in module that cannot be imported, in one line naming it."""


def named_in_environment() -> list[str]:
    return [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]


def load_external(names: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Import the user's plug-in modules, `names` and those named in the environment and by installed
    packages' entry points, each once; returns the names imported by this call. Raises
    PluginImportError for the first that fails."""
    import analyses  # noqa: F401 - the registries a user's module adds to exist before it runs
    import tasks  # noqa: F401
    import variants  # noqa: F401

    wanted = [*names, *named_in_environment(), *entry_point_modules()]
    imported = []
    for name in dict.fromkeys(wanted):
        if name not in LOADED:
            LOADED[name] = import_one(name)
            imported.append(name)
    return imported


@cache
def entry_point_modules() -> tuple[str, ...]:
    """The modules installed packages name in ENTRY_POINT_GROUP: read once a process (a scan of every
    installed distribution, and load_external runs each time the configs are registered)."""
    return tuple(entry.value for entry in metadata.entry_points(group=ENTRY_POINT_GROUP))


def import_one(name: str) -> ModuleType:
    try:
        if name.endswith(".py") or os.sep in name or "/" in name:
            return import_file(Path(name))
        return importlib.import_module(name)
    except Exception as error:  # any error in the user's module: named, and nothing runs
        detail = " ".join(str(error).split()) or "no message"
        raise PluginImportError(f"plug-in '{name}' could not be imported: {type(error).__name__}: {detail}") from error


def import_file(path: Path) -> ModuleType:
    """A Python file as the module named by its stem, kept in sys.modules (where the code identity of
    what it defines, bench.core.results.plugin_hash, finds its source)."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    name = path.stem
    if name in sys.modules:
        raise ImportError(f"a module named '{name}' is already imported; rename {path.name}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def share_with_workers(names: list[str]) -> None:
    """Name `names` in the environment too, so that processes started from here import them."""
    known = named_in_environment()
    os.environ[PLUGINS_VARIABLE] = ",".join(dict.fromkeys([*known, *names]))
