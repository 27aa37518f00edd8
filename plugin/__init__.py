"""What the three plug-in kinds (variants, tasks, analyses) share: registration by class name, and
ranged options.

An option declared ``Annotated[float, Range(0, 1, low_open=True)]`` in a plug-in's constructor
is checked by the config validation, so no plug-in writes its own range check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def register(registry: dict[str, type], kind: str, cls: type) -> None:
    """Add cls to registry under cls.name if the class itself defines a name."""
    if "name" in cls.__dict__:
        if cls.name in registry:
            raise TypeError(f"{kind} name '{cls.name}' is registered twice")
        registry[cls.name] = cls


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
