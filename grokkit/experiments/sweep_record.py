"""What a sweep directory records of its runs, and the checks a new run of the sweep makes against it.

``SWEEP/base.yaml`` is the resolved config every trial starts from and ``SWEEP/sweep.json`` every trial's point,
the earlier runs' included. A new run into the directory must have the same base config (``trainer.max_time``
aside), the same grid keys, and no trial that an earlier run trained under another name or other values:
else one config would train twice, or a finished trial be kept under values it did not train with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from grokkit.atomic import atomic_write
from grokkit.errors import ConfigError
from grokkit.experiments.grid import load_yaml
from grokkit.results.runs import SWEEP_PLAN, flatten, grid_keys, sweep_trials

BASE = "base.yaml"


def check_same_base(sweep_dir: Path, base: dict[str, Any]) -> None:
    """Refuse to mix trials of another base config into a sweep directory. ``trainer.max_time`` may differ:
    it changes no trial's numbers, only where one stops, and a trial it stopped resumes under the new one."""
    path = sweep_dir / BASE
    if not path.is_file():
        return
    earlier, now = flatten(yaml.safe_load(path.read_text())), flatten(base)
    differing = sorted(
        key
        for key in earlier.keys() | now.keys()
        if earlier.get(key) != now.get(key) and not f"{key}.".startswith("trainer.max_time.")
    )
    if differing:
        raise ConfigError(
            f"{sweep_dir} holds a sweep of another config (it differs in {', '.join(differing[:3])}); "
            "give the same --config files and flags to continue it, or another --out"
        )


def earlier_trials(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Every trial's point that earlier runs of the sweep planned (``sweep.json``; none in a new sweep)."""
    return sweep_trials(sweep_dir) if (sweep_dir / SWEEP_PLAN).is_file() else {}


def named_as_earlier(
    earlier: dict[str, dict[str, Any]], points: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``points``, a trial that an earlier run planned with a number kept as text (``--grid model.lr=[1e-3]``
    read the YAML 1.1 way, as a string, named ``lr=1e-3``) under that run's name and values: the same config,
    which its finished run holds."""
    renamed = {}
    for name, point in points.items():
        twin = next(
            (other for other, values in earlier.items() if values != point and as_numbers(values) == point),
            None,
        )
        renamed[twin or name] = point if twin is None else earlier[twin]
    return renamed


def as_numbers(point: dict[str, Any]) -> dict[str, Any]:
    """``point`` with each text that YAML 1.2 reads as a float, a float."""
    read = {key: load_yaml(value) if isinstance(value, str) else value for key, value in point.items()}
    return {key: read[key] if isinstance(read[key], float) else value for key, value in point.items()}


def check_same_axes(
    sweep_dir: Path, earlier: dict[str, dict[str, Any]], points: dict[str, dict[str, Any]]
) -> None:
    """Refuse trials over other grid keys than the earlier runs': with ``data.seed`` added to ``data.phi``,
    ``phi=3.0,seed=0`` would train ``phi=3.0``'s config again, and the table mix the two grids."""
    before, now = grid_keys(earlier), grid_keys(points)
    if earlier and set(before) != set(now):
        raise ConfigError(
            f"{sweep_dir} holds a sweep over {', '.join(before)}, not {', '.join(now)}: its trials and these "
            "would not be one grid; use another --out"
        )


def check_same_points(
    sweep_dir: Path, earlier: dict[str, dict[str, Any]], points: dict[str, dict[str, Any]]
) -> None:
    """Refuse trials over other grid keys (:func:`check_same_axes`); a trial whose name an earlier run of the
    sweep gave other values: its finished run would be kept under values it did not train with
    (``data.seed=[0]`` and ``data.seed,seed_everything=[0]`` are both ``seed=0``); and a trial whose values an
    earlier one trained under another name (``phi=9`` after ``phi=9.0``)."""
    check_same_axes(sweep_dir, earlier, points)
    for name, point in points.items():
        if earlier.get(name, point) != point:
            raise ConfigError(
                f"{sweep_dir}: its trial {name} ran with {earlier[name]}, not {point}; give the grid it ran "
                "with, or another --out"
            )
        twin = next((other for other, values in earlier.items() if values == point and other != name), None)
        if twin is not None:  # 9 and 9.0: one config, which would train twice under two names
            raise ConfigError(
                f"{sweep_dir}: trial {name} has the values of its trial {twin} ({point}); write the grid's values "
                f"as they were written then ({twin}), or give another --out"
            )


def write_plan(sweep_dir: Path, base: dict[str, Any], trials: dict[str, dict[str, Any]]) -> None:
    """``base.yaml`` and ``sweep.json``: every trial's point, the earlier runs' included."""
    plan = {"base": BASE, "trials": trials}
    atomic_write(sweep_dir / BASE, lambda f: f.write(yaml.safe_dump(base, sort_keys=False).encode()))
    atomic_write(sweep_dir / SWEEP_PLAN, lambda f: f.write(json.dumps(plan, indent=1).encode()))
