"""A sweep's plan, checked before any trial starts: the resolved base config, the grid, the datasets.

The ``--config`` files (a file's ``sweep:`` section taken out) and ``fit`` flags resolve, through ``grokkit
fit``'s own parser, into one base config that logs each trial to ``SWEEP/<trial name>``; every grid key must
be a key of it and every value parse as that key's type; each distinct dataset is built once, so trials
running in parallel only read it. :mod:`grokkit.experiments.sweep_record` keeps the plan in the sweep
directory and checks it against the earlier runs'.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentError, Namespace

from grokkit.cli import GrokkitCLI, build_cli
from grokkit.cli.finished_run import data_module
from grokkit.cli.parser import GrokkitParser
from grokkit.cli.settings import check_settings, config_sections
from grokkit.errors import ConfigError
from grokkit.experiments import grid
from grokkit.experiments.trial import config_flags


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


def check_flags(fit_flags: list[str], cpus_per_trial: int | None, threads: int | None) -> None:
    """Refuse a config flag the sweep would override unseen: the logger's (a run directory per trial in
    --out), and a ``--threads`` other than ``--cpus-per-trial`` (a trial's torch threads are the CPUs Ray
    reserves for it)."""
    names = [arg.partition("=")[0] for arg in fit_flags if arg.startswith("--")]
    for name in names:
        if name == "--trainer.logger" or name.startswith("--trainer.logger."):
            raise ConfigError(
                f"{name}: grokkit sweep sets the logger itself (a run directory per trial); leave the flag out "
                "and choose the sweep's directory with --out"
            )
    if "--threads" in names and cpus_per_trial is not None and threads != cpus_per_trial:
        raise ConfigError(
            f"--threads {threads} and --cpus-per-trial {cpus_per_trial}: a trial's torch threads are its CPUs; "
            "give --cpus-per-trial alone"
        )


def check_keys(config: Namespace, keys: list[str], what: str) -> None:
    """Refuse a key the config does not have, or one the sweep sets itself; ``what`` names the keys in errors."""
    for key in keys:
        if key.startswith("trainer.logger"):
            raise ConfigError(f"{what} key {key}: grokkit sweep sets the logger itself (one run per trial)")
        if key == "threads":
            raise ConfigError(
                f"{what} key threads: a trial's torch threads are the CPUs Ray reserves for it; give "
                "--cpus-per-trial instead"
            )
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


def check_gpus(
    base: dict[str, Any], points: dict[str, dict[str, Any]], gpus_per_trial: float, local: bool
) -> None:
    """A trial that reserves no GPU runs with none visible (:class:`~grokkit.experiments.trial.Trial`): refuse
    one on a GPU accelerator without ``--gpus-per-trial`` (its fit would find no GPU after the sweep started),
    and say so where this machine (``local``: no ``--address``) has GPUs that ``auto`` trials would not use."""
    if gpus_per_trial > 0:
        return
    for name, point in points.items():
        accelerator = point.get("trainer.accelerator", base["trainer"].get("accelerator"))
        if accelerator in ("gpu", "cuda"):
            raise ConfigError(
                f"trainer.accelerator={accelerator} (trial {name}) with --gpus-per-trial 0: a trial that reserves "
                "no GPU sees none; give --gpus-per-trial 1 (or a fraction, e.g. 0.25)",
                "trainer.accelerator",
            )
    if local and torch.cuda.is_available():
        print(
            f"grokkit sweep: --gpus-per-trial 0: the trials see none of this machine's {torch.cuda.device_count()} "
            "GPU(s) and train on the CPU; give --gpus-per-trial 1 (or a fraction) to train them on the GPUs"
        )
