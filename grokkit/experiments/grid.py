"""A sweep's grid: axes of config keys with their values, the trials they span, and the trials' names.

An axis is one config key with a list of values (``data.phi: [7.2, 9.0]``), or several keys joined by commas
that take each value together (``data.seed,seed_everything: [0, 1]`` gives two trials, not four). The trials
are the product of the axes, in order, each named after its point (``phi=7.2,seed=0``); the name is the
trial's run directory.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from grokkit.errors import ConfigError


class GridLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's floats: ``1e-3`` is a number (YAML 1.1, PyYAML's, wants ``1.0e-3``), as
    jsonargparse reads it too, so that ``[1e-3, 0.001]`` is one value given twice, not a string and a float."""


GridLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """``text`` as :class:`GridLoader` reads it (a ``--grid`` list, a config file holding a ``sweep:`` section)."""
    return yaml.load(text, Loader=GridLoader)  # a SafeLoader: plain data only


@dataclass(frozen=True)
class Axis:
    keys: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def text(self) -> str:
        return ",".join(self.keys)


def format_value(value: Any) -> str:
    """A value as it appears in a trial's name (and so in a path: no ``/``)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.replace("/", "-")


def parse_axis(keys_text: str, values: Any, where: str) -> Axis:
    """One axis of ``--grid KEYS=[...]`` or of a ``sweep: grid:`` section; ``where`` names it in errors."""
    keys = tuple(key.strip() for key in str(keys_text).split(","))
    if not all(keys):
        raise ConfigError(
            f"{where} {keys_text!r}: an empty key; write KEY or KEY1,KEY2 (keys taking one value)"
        )
    if not isinstance(values, list):
        raise ConfigError(
            f"{where} {keys_text}: the values must be a list, e.g. {keys[0]}=[{format_value(values)}]"
        )
    if not values:
        raise ConfigError(f"{where} {keys_text}: the list of values is empty; give at least one value")
    names = [format_value(value) for value in values]
    # one trial directory for two values, or one config under two names (9 and 9.0)
    twice = [
        (i, j)
        for i, j in itertools.combinations(range(len(values)), 2)
        if names[i] == names[j] or values[i] == values[j]
    ]
    if twice:
        i, j = twice[0]
        shown = names[i] if names[i] == names[j] else f"{names[i]} (as {names[j]})"
        raise ConfigError(f"{where} {keys_text}: value {shown} is given twice; give each value once")
    return Axis(keys, tuple(values))


def parse_flag(text: str) -> Axis:
    """``--grid data.phi=[7.2,9.0]`` (the values in YAML)."""
    keys, sep, values = text.partition("=")
    if not sep:
        raise ConfigError(f"--grid {text}: expected KEY=[VALUE,...], e.g. --grid data.phi=[7.2,9.0]")
    try:
        parsed = load_yaml(values)
    except yaml.YAMLError:
        raise ConfigError(f"--grid {text}: the values are not a YAML list, e.g. [7.2,9.0]") from None
    return parse_axis(keys, parsed, "--grid")


def parse_section(section: Any, where: str) -> list[Axis]:
    """The axes of a config file's ``sweep:`` section (``sweep: {grid: {KEY: [...], ...}}``)."""
    if not isinstance(section, dict) or set(section) - {"grid"}:
        raise ConfigError(f"{where}: the sweep section holds one key, grid: {{KEY: [VALUE, ...], ...}}")
    grid = section.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: sweep.grid must map config keys to lists of values")
    axes = [parse_axis(keys, values, f"{where}: sweep.grid") for keys, values in grid.items()]
    return distinct_keys(axes, f"{where}: sweep.grid ")


def distinct_keys(axes: list[Axis], where: str = "") -> list[Axis]:
    """``axes`` of one source, refused if two share a key: :func:`merge` would drop the earlier one unseen."""
    seen: dict[str, Axis] = {}
    for axis in axes:
        for key in axis.keys:
            if key in seen:
                raise ConfigError(
                    f"{where}{axis.text}: {key} is also in {where}{seen[key].text}; give each key one list"
                )
            seen[key] = axis
    return axes


def merge(axes: list[Axis]) -> list[Axis]:
    """A later axis replaces every earlier one that shares a key with it (``--grid`` overrides a file)."""
    merged: list[Axis] = []
    for axis in axes:
        merged = [kept for kept in merged if not set(kept.keys) & set(axis.keys)] + [axis]
    return merged


def trial_points(axes: list[Axis]) -> dict[str, dict[str, Any]]:
    """Every trial's name and point (config key -> value), in grid order."""
    labels = [axis.keys[0].rpartition(".")[2] for axis in axes]
    labels = [
        label if labels.count(label) == 1 else axis.keys[0] for label, axis in zip(labels, axes, strict=True)
    ]
    trials = {}
    for combination in itertools.product(*(axis.values for axis in axes)):
        name = ",".join(f"{label}={format_value(v)}" for label, v in zip(labels, combination, strict=True))
        trials[name] = {key: v for axis, v in zip(axes, combination, strict=True) for key in axis.keys}
    return trials
