"""A finished run's directory, as the commands that read one take it: named on their command line, its
``config.yaml`` read back (``grokkit analyze``, ``export``, ``plot``, ``transfer``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from grokkit.cli.configfiles import read_config_file
from grokkit.cli.parser import ToolParser
from grokkit.data import TwoHopDataModule
from grokkit.data.injection import Injection
from grokkit.errors import ConfigError


def run_dir_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The command line of a tool that reads one finished run: ``grokkit COMMAND RUN_DIR [options]``."""
    parser = ToolParser(prog=f"grokkit {command}", description=description)
    parser.add_argument(
        "run_dir", type=Path, help="a run directory written by `grokkit fit` (holds config.yaml)"
    )
    return parser


def run_config(run_dir: Path) -> dict[str, Any]:
    """A run's ``config.yaml``, without the arguments of ``fit`` itself (not part of the run)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} not found: give a run directory written by `grokkit fit`")
    config = read_config_file(path)
    for section in ("model", "data"):
        if not isinstance(config.get(section), dict):
            raise ConfigError(
                f"{path} has no {section} section: it is not the config.yaml `grokkit fit` writes; give the "
                "directory of a run"
            )
    for key in ("ckpt_path", "weights_only"):
        config.pop(key, None)
    return config


def data_module(data: dict[str, Any]) -> TwoHopDataModule:
    """The data module a ``data`` section read as plain YAML describes (a run's ``config.yaml``, a sweep's base
    config), its ``injection`` an :class:`Injection` as ``grokkit fit`` parses it."""
    injection = data.get("injection")
    return TwoHopDataModule(**{**data, "injection": Injection(**injection) if injection else None})
