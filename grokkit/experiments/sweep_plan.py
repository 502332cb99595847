"""A sweep's plan, checked before any trial starts: the resolved base config, the grid, the datasets.

The ``--config`` files (a file's ``sweep:`` section taken out) and ``fit`` flags resolve, through ``grokkit
fit``'s own parser, into one base config that logs each trial to ``SWEEP/<trial name>``; every grid key must
be a key of it and every value parse as that key's type; each distinct dataset is built once, so trials
running in parallel only read it. ``SWEEP/base.yaml`` and ``SWEEP/sweep.json`` (every trial's point) record
the plan, and a sweep directory refuses trials of another base config.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError, Namespace

from grokkit.atomic import atomic_write
from grokkit.cli import GrokkitCLI, build_cli
from grokkit.cli.finished_run import data_module
from grokkit.cli.parser import GrokkitParser
from grokkit.cli.settings import check_settings, config_sections
from grokkit.errors import ConfigError
from grokkit.experiments import grid
from grokkit.experiments.trial import config_flags
from grokkit.results.runs import SWEEP_PLAN, flatten, grid_keys, sweep_trials

BASE = "base.yaml"


class ConfigOnlyCLI(GrokkitCLI):
    """Parses and checks a config exactly as ``grokkit fit`` does, and instantiates nothing."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def config_cli(args: list[str]) -> ConfigOnlyCLI:
    """``grokkit fit``'s parser and checks, and the config ``args`` give (a bad config: one line, exit 2)."""
    return build_cli(args, prog="grokkit sweep", run=False, save_config=False, cli_class=ConfigOnlyCLI)


def read_configs(paths: list[str]) -> tuple[list[str], list[grid.Axis]]:
    """``--config`` arguments for the parser (a file's ``sweep:`` section taken out) and the sections' axes."""
    args, axes = [], []
    for path in paths:
        try:
            content = grid.load_yaml(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file") from None
        except yaml.YAMLError as error:
            raise ConfigError(
                f"--config {path}: not valid YAML ({' '.join(str(error).split())[:120]})"
            ) from None
        if isinstance(content, dict) and "sweep" in content:
            axes += grid.parse_section(content.pop("sweep"), path)
            args += ["--config", yaml.safe_dump(content, sort_keys=False)]  # jsonargparse reads YAML text too
        else:
            args += ["--config", path]
    return args, axes


def base_config(parser: GrokkitParser, config: Namespace, sweep_dir: Path, threads: int) -> dict[str, Any]:
    """The resolved config, logging every trial to ``sweep_dir/<trial>`` without a progress bar, on ``threads``
    torch threads (recorded in each trial's config.yaml: the thread count is part of a run's numbers)."""
    base = yaml.safe_load(parser.dump(config, skip_none=False))
    logger = {"save_dir": str(sweep_dir.resolve()), "name": "", "version": "", "default_hp_metric": False}
    base["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": logger,
    }
    base["trainer"]["enable_progress_bar"] = False
    base["threads"] = threads
    return base


def check_keys(config: Namespace, keys: list[str], what: str) -> None:
    """Refuse a key the config does not have, or one the sweep sets itself; ``what`` names the keys in errors."""
    for key in keys:
        if key.startswith("trainer.logger"):
            raise ConfigError(f"{what} key {key}: grokkit sweep sets the logger itself (one run per trial)")
        if key not in config:
            raise ConfigError(
                f"{what} key {key} is not a config key; `grokkit fit --config ... --print_config` lists them"
            )


def check_values(cli: ConfigOnlyCLI, base: dict[str, Any], points: dict[str, dict[str, Any]]) -> None:
    """Refuse a value of the wrong type or outside its range, as ``grokkit fit`` would: each point (its
    description -> keys and values) parses on ``base`` through the CLI's own checks."""
    cli.parser.exit_on_error = False  # an error raises, so it can name the point
    base_text, sections = yaml.safe_dump(base, sort_keys=False), config_sections(cli)
    for where, point in points.items():
        try:
            check_settings(cli.parser.parse_args(["--config", base_text, *config_flags(point)]), sections)
        except (ArgumentError, ConfigError) as error:
            raise ConfigError(f"{where}: {' '.join(str(error).split())}") from None


def check_axes(cli: ConfigOnlyCLI, config: Namespace, base: dict[str, Any], axes: list[grid.Axis]) -> None:
    """Refuse a key the config does not have, one the sweep sets itself, or a value it would refuse."""
    check_keys(config, [key for axis in axes for key in axis.keys], "grid")
    values = {
        f"grid {axis.text}={grid.format_value(value)}": dict.fromkeys(axis.keys, value)
        for axis in axes
        for value in axis.values
    }
    check_values(cli, base, values)


def check_points(
    cli: ConfigOnlyCLI, config: Namespace, base: dict[str, Any], points: dict[str, dict[str, Any]]
) -> None:
    """As :func:`check_axes`, for trials given as points (name -> config key -> value)."""
    check_keys(config, sorted({key for point in points.values() for key in point}), "trial")
    check_values(cli, base, {f"trial {name}": point for name, point in points.items()})


def data_arguments(data: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """The data module's arguments at a grid point: the base config's, with the point's ``data.`` keys set
    (``data.injection.n_new`` inside ``injection``)."""
    data = copy.deepcopy(data)
    for key, value in point.items():
        if key.startswith("data."):
            *parents, last = key.removeprefix("data.").split(".")
            section = functools.reduce(lambda inner, part: inner.setdefault(part, {}), parents, data)
            section[last] = value
    return data


def build_datasets(base: dict[str, Any], points: dict[str, dict[str, Any]], write: bool = True) -> int:
    """Build every dataset the trials need, once, before they run in parallel; returns how many differ.
    ``write`` false (a dry run) draws each source graph and splits not built yet in memory only, so that an
    impossible one is refused (an injection is drawn only by a real sweep: it reads its source from disk)."""
    built = set()
    for name, point in points.items():
        try:
            datamodule = data_module(data_arguments(base["data"], point))
            if datamodule.dataset_dir in built:
                continue
            if write:
                datamodule.prepare_data()
            elif not datamodule.source_dir.exists():
                datamodule.draw()
        except ConfigError as error:
            raise ConfigError(f"trial {name}: {error}") from None
        built.add(datamodule.dataset_dir)
    return len(built)


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
