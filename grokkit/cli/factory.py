"""The one way every grokkit command builds its LightningCLI (``fit``, ``analyze``, ``transfer``, ``sweep``, bench)."""

from __future__ import annotations

import warnings
from typing import Any

from lightning.pytorch.cli import ArgsType

from grokkit.cli.app import GrokkitCLI
from grokkit.cli.parser import GrokkitParser
from grokkit.cli.runconfig import RunConfig
from grokkit.data import TwoHopDataModule
from grokkit.locking import scope
from grokkit.train.module import GrokModule

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "default", "default_hp_metric": False},
    },
    "check_val_every_n_epoch": None,
    "val_check_interval": 200,
    "log_every_n_steps": 50,
    "num_sanity_val_steps": 0,
}
CLI_KWARGS: dict[str, Any] = {  # how `grokkit` builds its LightningCLI
    "trainer_defaults": TRAINER_DEFAULTS,
    "save_config_callback": RunConfig,
    "save_config_kwargs": {"overwrite": True},
    "auto_configure_optimizers": False,
    "parser_class": GrokkitParser,
    "parser_kwargs": {"prog": "grokkit"},
}


def build_cli(
    args: ArgsType,
    prog: str = "grokkit",
    run: bool = True,
    save_config: bool = True,
    cli_class: type[GrokkitCLI] = GrokkitCLI,
) -> GrokkitCLI:
    """Parse ``args`` as ``grokkit fit`` would (``prog`` names the command in errors); with ``run``, run the
    subcommand; with ``save_config``, write the run's ``config.yaml``."""
    kwargs = {**CLI_KWARGS, "parser_kwargs": {"prog": prog}}
    if not save_config:
        del kwargs["save_config_kwargs"]
        kwargs["save_config_callback"] = None
    # scope(): a fit's run lock ends with it; a tool's own args (transfer, analyze, sweep) are not sys.argv's
    with warnings.catch_warnings(), scope():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return cli_class(GrokModule, TwoHopDataModule, **kwargs, args=args, run=run)
