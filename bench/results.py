"""Result files: one ``result.json`` per job, written atomically, plus the provenance it carries."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "hydra-core", "omegaconf", "numpy", "pandas")


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


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as temporary, open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())


def read_result(path: Path) -> dict[str, Any] | None:
    """The record at path, or None where there is none or it cannot be parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files that a killed writer left half-written."""
    for stale in directory.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


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
        "git_dirty": bool(git(["status", "--porcelain", "--untracked-files=no"])),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "hostname": socket.gethostname(),
        "command": " ".join(sys.argv),
    }


def git(arguments: list[str]) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip()
