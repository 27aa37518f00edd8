"""Result files: one ``result.json`` per job, written atomically, the provenance it carries, and
the identity of the code a job ran.

JSON is strict: a non-finite number is written as null (a missing value), never as NaN.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

RESULT_FILE = "result.json"
JOBS_FILE = "jobs.json"  # in a sweep's directory: the jobs it asked for when it started
UNSTARTABLE_FILE = "unstartable.json"  # in a sweep's directory: jobs whose own directory could not hold a record
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("torch", "hydra-core", "omegaconf", "numpy", "pandas")
PROJECT_PACKAGES = ("bench", "variants", "tasks", "analyses", "plugin")
CORE_DIR = Path(__file__).resolve().parent


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


def read_result(path: Path) -> dict[str, Any] | None:
    """The record at path, or None where there is none or it cannot be parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


CLAIM_FILE = ".claim"
# A claim by a process on another machine, which this one cannot check, counts as abandoned after this long.
CLAIM_TIMEOUT_S = 6 * 3600


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
    """Claim a job's directory for this process by creating its claim file atomically; None on
    success, otherwise the live claim of another process (pid, hostname). A claim whose process is
    gone (or, from another machine, older than CLAIM_TIMEOUT_S) is taken over."""
    path = job_dir / CLAIM_FILE
    mine = {"pid": os.getpid(), "hostname": socket.gethostname()}
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            held = read_result(path)
            stale = not isinstance(held, dict) or process_alive(held.get("pid"), held.get("hostname")) is False or (
                process_alive(held.get("pid"), held.get("hostname")) is None and time.time() - path.stat().st_mtime > CLAIM_TIMEOUT_S
            )
            if not stale:
                return held
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(mine, handle)
        return None
    return read_result(path)


def release(job_dir: Path) -> None:
    path = job_dir / CLAIM_FILE
    held = read_result(path)
    if isinstance(held, dict) and held.get("pid") == os.getpid() and held.get("hostname") == socket.gethostname():
        path.unlink(missing_ok=True)


def record_unstartable(sweep_dir: Path, overrides: list[str], job_name: str, error: BaseException) -> None:
    """Add a job that could not write into its own directory (a file where it should be, or read-only)
    to the sweep's unstartable.json, so that the sweep's summary and report still name it."""
    path = sweep_dir / UNSTARTABLE_FILE
    entries = read_result(path)
    entries = [entry for entry in entries if isinstance(entry, dict) and entry.get("job") != job_name] if isinstance(entries, list) else []
    entries.append({"job": job_name, "overrides": overrides, "error": f"{type(error).__name__}: {error}", "pid": os.getpid()})
    write_json_atomic(path, entries)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files that a killed writer left half-written."""
    for stale in directory.rglob(".*.tmp"):
        stale.unlink(missing_ok=True)


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def project_modules(module: ModuleType) -> set[str]:
    """The project's modules that `module` uses, itself included, followed through their own globals:
    a variant's file, the base class and helpers it imports, and theirs."""
    seen: set[str] = set()
    pending = [module.__name__]
    while pending:
        name = pending.pop()
        if name in seen or name not in sys.modules:
            continue
        seen.add(name)
        for value in vars(sys.modules[name]).values():
            used = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if isinstance(used, str) and used.split(".")[0] in PROJECT_PACKAGES:
                pending.append(used)
    return seen


def source_hash(files: dict[str, Path | None]) -> str:
    """A hash of named source files (a name without a file contributes the name only)."""
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode())
        if path is not None and path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def plugin_hash(cls: type) -> str:
    """A hash of the source of a plug-in class's module and of every project module it uses."""
    modules = project_modules(inspect.getmodule(cls))
    return source_hash({name: Path(sys.modules[name].__file__) if getattr(sys.modules[name], "__file__", None) else None for name in modules})


def code_identity(*plugins: type) -> dict[str, str]:
    """What a job's result depends on besides its config: the source of the core (every file of
    bench/core) and of each plug-in class given, by kind (variants, tasks)."""
    identity = {"core": source_hash({path.name: path for path in CORE_DIR.glob("*.py")})}
    for plugin in plugins:
        identity[plugin.__module__.split(".")[0]] = plugin_hash(plugin)
    return identity


@cache
def environment() -> dict[str, Any]:
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
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
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
