"""What a setting may hold: a numeric range, or one of a set of names (read where they are defined)."""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    null: str = ""  # what null means, for keys that accept it

    def __contains__(self, value: float) -> bool:
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return math.isfinite(value) and above and below

    def __str__(self) -> str:
        interval = f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"
        return f"{interval} (or null: {self.null})" if self.null else interval


@dataclass(frozen=True)
class Choice:
    """A string setting (or each one of a list): one of the names held by the constant at ``names``, an import
    path (``grokkit.data.splits.EVAL_SPLITS``), read when checked."""

    names: str

    def allowed(self) -> tuple[str, ...]:
        module, _, constant = self.names.rpartition(".")
        return tuple(getattr(importlib.import_module(module), constant))

    def __contains__(self, value: str) -> bool:
        return value in self.allowed()

    def __str__(self) -> str:
        return f"one of {', '.join(self.allowed())}"


def refused(value: Any, allowed: Range | Choice) -> bool:
    """Whether a value of the type the setting takes lies outside what is allowed (other types: the parser's)."""
    if isinstance(allowed, Choice):
        return isinstance(value, str) and value not in allowed
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value not in allowed


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"
