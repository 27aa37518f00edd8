"""The core of the benchmark: model, training, evaluation, results, reports and the command line.

``bench`` uses ``variants``, ``tasks`` and ``analyses``; they never import ``bench``. This module
holds what every command needs before it loads anything heavy: where the configs are, and how a
refusal is worded.
"""
from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"  # inside the package: installed with it
CONFIG_NAME = "config"


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the problem and the fix."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error, following its cause where it says more."""
    cause = error.__cause__ or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__
