"""Result files: one ``result.json`` per job, written atomically, the provenance it carries, the
claim a running job holds on its directory, and the identity of the code that makes a job's numbers.

Code is identified by its syntax tree without docstrings: editing a comment, a docstring or the
layout changes no identity (and re-runs no job on resume); any change to the code does.

JSON is strict: a non-finite number is written as null (a missing value), never as NaN.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import inspect
import json
import logging
import math
import os
import platform
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Union

from bench import first_line

log = logging.getLogger(__name__)
RESULT_FILE = "result.json"
JOBS_FILE = "jobs.json"  # in a sweep's directory: the jobs it asked for when it started
UNSTARTABLE_FILE = "unstartable.json"  # in a sweep's directory: jobs whose own directory could not hold a record
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("torch", "hydra-core", "omegaconf", "numpy", "pandas")
PROJECT_PACKAGES = ("bench", "variants", "tasks", "analyses", "plugin")
# What a code hash covers: a whole module (with the project modules it uses) or one function.
CodeUnit = Union[ModuleType, Callable[..., Any]]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed onto it once the block succeeds: readers
    see the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def json_safe(value: Any) -> Any:
    """value with every non-finite float replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json_atomic(path: Path, payload: dict[str, Any] | list[Any]) -> None:
    with atomic_path(path) as temporary, open(temporary, "w") as handle:
        json.dump(json_safe(payload), handle, indent=2, default=str, allow_nan=False)
        handle.flush()
        os.fsync(handle.fileno())


# The largest JSON file read back (a record with its curve is tens of kB): a bigger one is damaged.
MAX_JSON_BYTES = 64 * 2**20


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in the regular file at path. Raises ValueError, naming the problem, for
    anything else: no file, a FIFO or device (which would hang or never end), a file over
    max_bytes, or text that is not JSON."""
    try:
        status = path.stat()  # follows a link: a link to /dev/zero is a device
    except OSError as error:
        raise ValueError(f"{path.name} cannot be read ({error.strerror})") from error
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"{path.name} is not a regular file")
    if status.st_size > max_bytes:
        raise ValueError(f"{path.name} is {status.st_size} bytes, over the {max_bytes} a record may have")
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read(max_bytes + 1))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path.name} is not JSON ({first_line(error)})") from error


def read_result(path: Path) -> dict[str, Any] | None:
    """The record at path, or None where there is none or it cannot be read as JSON (read_json)."""
    try:
        return read_json(path)
    except ValueError:
        return None


# result.json's fields and their kinds; every field may be null. "integer" and "number" exclude
# booleans, which JSON keeps apart and Python does not.
RECORD_FIELDS: dict[str, Any] = {
    "status": str, "variant": str, "task": str, "seed": "integer", "config_hash": str, "error": str,
    "started_at": str, "finished_at": str, "pid": "integer", "chance_accuracy": "number",
    "train_set_size": "integer", "steps_run": "integer", "num_threads": "integer", "n_params": "integer",
    "trained": bool, "control": bool, "train_time_s": "number", "train_tokens_per_s": "number",
    "wall_time_s": "number", "config": dict, "code": dict, "environment": dict, "analyses": dict,
    "overrides": list, "metrics": dict, "steps_to_target": dict, "curve": list, "test_slices": list,
    "weights_sha256": str, "chance_given_context": "number", "budget": dict,
}  # fmt: skip


def is_kind(value: Any, kind: Any) -> bool:
    if value is None:
        return True
    if kind in ("integer", "number"):
        number_types = int if kind == "integer" else (int, float)
        return isinstance(value, number_types) and not isinstance(value, bool)
    return isinstance(value, kind)


KIND_NAMES = {"integer": "an integer", "number": "a number", str: "text", bool: "true or false", dict: "an object", list: "a list"}
# Values of a test-set slice row: its slice's name, the value it takes, and counts.
SLICE_VALUE = (str, int, float)


def nested_fields(record: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(key, value, kind) of every value inside the metrics, steps to target, curve and slices."""
    for split, values in record.get("metrics").items():
        yield f"metrics.{split}", values, dict
        if isinstance(values, dict):
            yield from ((f"metrics.{split}.{key}", value, "number") for key, value in values.items())
    yield from ((f"steps_to_target.{split}", value, "integer") for split, value in record.get("steps_to_target").items())
    for field, value_kind in (("curve", "number"), ("test_slices", SLICE_VALUE)):
        for index, row in enumerate(record.get(field)):
            yield f"{field}[{index}]", row, dict
            if isinstance(row, dict):
                yield from ((f"{field}[{index}].{key}", value, "integer" if key == "step" else value_kind) for key, value in row.items())


def record_problem(record: Any) -> str | None:
    """What is wrong with a result record read back, in a few words; None for a sound one. Its
    fields have their kinds (RECORD_FIELDS), each metric and curve value is a number, and the
    variant, task and seed it names are those of the config it ran."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, kind in RECORD_FIELDS.items():
        if not is_kind(record.get(key), kind):
            return f"{key} is {json.dumps(record[key])[:40]}, not {KIND_NAMES[kind]}"
    filled = {**record, **{key: record.get(key) or {} for key in ("metrics", "steps_to_target", "config")},
              **{key: record.get(key) or [] for key in ("curve", "test_slices")}}  # fmt: skip
    for key, value, kind in nested_fields(filled):
        if not is_kind(value, kind):
            return f"{key} is {json.dumps(value)[:40]}, not {KIND_NAMES.get(kind, 'a number or text')}"
    config = filled["config"]
    for key, ran in (("variant", config.get("variant")), ("task", config.get("task")), ("seed", config.get("seed"))):
        ran = ran.get("name") if isinstance(ran, dict) else ran
        if config and record.get(key) != ran:
            return f"it names {key} {json.dumps(record.get(key))} but its config ran {json.dumps(ran)}"
    return None


CLAIM_FILE = ".claim"
# Job directory (resolved) -> the open claim file whose lock is this process's claim on that job.
HELD_CLAIMS: dict[Path, int] = {}


def process_alive(pid: Any, hostname: Any) -> bool | None:
    """Whether process `pid` of host `hostname` still runs; None where this machine cannot tell."""
    if not isinstance(pid, int) or hostname != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(job_dir: Path) -> dict[str, Any] | None:
    """Claim a job's directory for this process: an exclusive lock on its claim file, held until
    `release` or until the process ends, when the kernel drops it. A killed job's claim thus ends
    with it: no claim is ever stale, none needs a timeout, and of processes that try at once exactly
    one gets it. None on success; otherwise the holder's pid and hostname, as it wrote them into
    the file ({} in the instant before it has)."""
    path = job_dir / CLAIM_FILE
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            holder = read_result(path)
            return holder if isinstance(holder, dict) else {}
        if is_open_at(descriptor, path):
            break
        # The holder released and removed the file between our open and our lock: that lock guards
        # nothing any more, so claim the file now at the path instead.
        os.close(descriptor)
    os.ftruncate(descriptor, 0)
    os.write(descriptor, json.dumps({"pid": os.getpid(), "hostname": socket.gethostname()}).encode())
    HELD_CLAIMS[job_dir.resolve()] = descriptor
    return None


def is_open_at(descriptor: int, path: Path) -> bool:
    """Whether the open file `descriptor` is the file now at `path`."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


def release(job_dir: Path) -> None:
    """End this process's claim on a job's directory (nothing where it holds none)."""
    descriptor = HELD_CLAIMS.pop(job_dir.resolve(), None)
    if descriptor is None:
        return
    # Removed while still locked, so that a process that opened this file meanwhile finds, once
    # it gets the lock, that the file is gone, and claims afresh (see `claim`).
    (job_dir / CLAIM_FILE).unlink(missing_ok=True)
    os.close(descriptor)


def record_unstartable(sweep_dir: Path, overrides: list[str], job_name: str, error: BaseException) -> None:
    """Add a job that could not write into its own directory (a file where it should be, or read-only)
    to the sweep's unstartable.json, so that the sweep's summary and report still name it."""
    path = sweep_dir / UNSTARTABLE_FILE
    entries = read_result(path)
    entries = [entry for entry in entries if isinstance(entry, dict) and entry.get("job") != job_name] if isinstance(entries, list) else []
    entries.append({"job": job_name, "overrides": overrides, "error": f"{type(error).__name__}: {error}", "pid": os.getpid()})
    try:
        write_json_atomic(path, entries)
    except OSError as unwritable:  # a full disk or a read-only sweep: the log names the job, the sweep goes on
        log.error("%s cannot be written (%s): job %s is not recorded there", path, unwritable.strerror, job_name)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files that a killed writer left half-written."""
    for stale in directory.rglob(".*.tmp"):
        stale.unlink(missing_ok=True)


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def project_modules(module: ModuleType) -> set[str]:
    """The project's modules that `module` uses, itself included, followed through their own globals:
    a variant's file, the base class and helpers it imports, and theirs. A package's submodules are
    followed only where something uses them: Python sets every imported submodule on its package, so
    `plugin` holds `plugin.plotting` once anything has drawn a figure, though `from plugin import
    Range` uses none of it."""
    seen: set[str] = set()
    pending = [module.__name__]
    while pending:
        name = pending.pop()
        if name in seen or name not in sys.modules:
            continue
        seen.add(name)
        for value in vars(sys.modules[name]).values():
            used = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            submodule_by_import = isinstance(value, ModuleType) and used.startswith(f"{name}.") and hasattr(sys.modules[name], "__path__")
            if isinstance(used, str) and used.split(".")[0] in PROJECT_PACKAGES and not submodule_by_import:
                pending.append(used)
    return seen


def code_fingerprint(unit: CodeUnit) -> str:
    """The code of a module, or of one top-level function, as its file holds it now: its syntax tree
    without docstrings, which comments, docstrings and layout leave as it is and any change to the
    code changes. A file mid-edit that does not parse counts as its text; a module without a
    file, or a function its file no longer defines, as nothing."""
    module = unit if isinstance(unit, ModuleType) else sys.modules[unit.__module__]
    if getattr(module, "__file__", None) is None or not Path(module.__file__).exists():
        return ""
    status = Path(module.__file__).stat()
    key = (module.__file__, status.st_mtime_ns, status.st_size, None if isinstance(unit, ModuleType) else unit.__name__)
    if key not in FINGERPRINTS:
        FINGERPRINTS[key] = parsed_fingerprint(Path(module.__file__).read_text(), unit)
    return FINGERPRINTS[key]


# A fingerprint by (file, its modification time and size, function): every job and analysis hashes the
# same files, and parsing them each time made hashing most of a small job's bookkeeping.
FINGERPRINTS: dict[tuple, str] = {}


def parsed_fingerprint(source: str, unit: CodeUnit) -> str:
    """code_fingerprint of `unit` from its file's text."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    if not isinstance(unit, ModuleType):
        definitions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == unit.__name__]
        if not definitions:
            return ""
        tree = definitions[0]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:]
    return ast.dump(tree)


def code_hash(units: list[CodeUnit]) -> str:
    """A hash of the code of modules, each with the project modules it uses, and of single functions."""
    fingerprints = {}
    for unit in units:
        if isinstance(unit, ModuleType):
            fingerprints.update({name: code_fingerprint(sys.modules[name]) for name in project_modules(unit)})
        else:
            fingerprints[f"{unit.__module__}.{unit.__qualname__}"] = code_fingerprint(unit)
    digest = hashlib.sha256()
    for name, fingerprint in sorted(fingerprints.items()):
        digest.update(f"{name}\0{fingerprint}\0".encode())
    return digest.hexdigest()[:16]


def plugin_hash(cls: type) -> str:
    """A hash of the code of a plug-in class's module and of every project module it uses."""
    return code_hash([inspect.getmodule(cls)])


def code_identity(variant: type, task: type, core: list[CodeUnit]) -> dict[str, str]:
    """What a job's numbers depend on besides its config: the code of its variant and of its task,
    each with the project modules they use, and `core`, the model, training and data code that
    every job shares (modules, with the project modules they use, and single functions)."""
    return {"core": code_hash(core), "variants": plugin_hash(variant), "tasks": plugin_hash(task)}


@cache
def environment() -> dict[str, Any]:
    import torch  # here, not at the top: reading and writing records needs no torch

    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "git_commit": git(["rev-parse", "HEAD"]),
        "git_dirty": working_tree_dirty(REPO_ROOT),
        # torch picks its vector kernels by the CPU's capability, so two hosts can run other code for one job
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {torch.backends.cpu.get_cpu_capability()}",
        "hostname": socket.gethostname(),
        "command": " ".join(sys.argv),
    }


def working_tree_dirty(root: Path) -> bool | None:
    """Whether the checkout differs from its commit; untracked files count (a new variant file is a
    change), ignored ones (results, caches) do not. None outside a git checkout."""
    status = git(["status", "--porcelain"], root)
    return None if status is None else bool(status)


def git(arguments: list[str], root: Path = REPO_ROOT) -> str | None:
    try:
        completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()


def dotted(config: dict[str, Any], skip: tuple[str, ...] = (), prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted keys ({"train": {"lr": 0.1}} -> {"train.lr": 0.1}), lists
    as their text, leaving out the top-level keys in skip."""
    flat = {}
    for key, value in config.items():
        if key in skip and not prefix:
            continue
        if isinstance(value, dict):
            flat.update(dotted(value, prefix=f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if not isinstance(value, list) else str(value)
    return flat
