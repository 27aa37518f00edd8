"""What the three plug-in kinds (variants, tasks, analyses) share: registration by class name, and
ranged options.

An option declared ``Annotated[float, Range(0, 1, low_open=True)]`` in a plug-in's constructor
is checked by the config validation, so no plug-in writes its own range check.
"""
from __future__ import annotations

import importlib
import logging
import math
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)
# Plug-in modules that failed to import, by module name: the error, in one line.
BROKEN: dict[str, str] = {}


def register(registry: dict[str, type], kind: str, cls: type) -> None:
    """Add cls to registry under cls.name if the class itself defines a name."""
    if "name" in cls.__dict__:
        if cls.name in registry:
            raise TypeError(f"{kind} name '{cls.name}' is registered twice")
        registry[cls.name] = cls


def import_plugins(package: str, path: Iterable[str]) -> None:
    """Import every module of a plug-in package (which registers what it defines). A module that
    fails to import is named in one line, recorded in BROKEN and left out; the others keep working."""
    for module in pkgutil.iter_modules(path):
        name = f"{package}.{module.name}"
        try:
            importlib.import_module(name)
        except Exception as error:  # any error in a user's file: that plug-in is out, the command goes on
            BROKEN[name] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            log.warning("plug-in %s could not be imported and is left out (%s)", name, BROKEN[name])


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric option: finite, between low and high (inclusive unless open)."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    reason: str = ""  # why the limit is there, where it is not obvious

    def holds(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        low, high = number(self.low), number(self.high)
        if math.isinf(self.high):
            bounds = f"{'>' if self.low_open else '>='} {low}"
        elif math.isinf(self.low):
            bounds = f"{'<' if self.high_open else '<='} {high}"
        else:
            bounds = f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        return f"{bounds} ({self.reason})" if self.reason else bounds


def number(value: float) -> str:
    """An integral bound as an integer (1048576), any other as %g (0.001)."""
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:g}"


POSITIVE = Range(0, low_open=True)
# RoPE's frequencies base^(-2i/d) fall from 1 only for a base above 1.
ROPE_BASE = Range(1, low_open=True)
