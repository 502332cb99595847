"""A new run's directory, claimed once every input is checked: two runs never write into the same one."""

from __future__ import annotations

import os

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.loggers import TensorBoardLogger

from grokkit.errors import ConfigError


def claim_run_directory(trainer: L.Trainer, init: Namespace) -> None:
    """Create the run's version directory; if another run created it since the version was chosen, take the
    next one (``init``, the logger's config, is updated: the saved config.yaml names the directory claimed)."""
    logger = trainer.logger
    while isinstance(logger, TensorBoardLogger):
        try:
            os.makedirs(logger.root_dir, exist_ok=True)
            os.mkdir(logger.log_dir)
            return
        except FileExistsError:
            init.version += 1
            logger = trainer.logger = type(logger)(**init.as_dict())
        except OSError as error:
            raise ConfigError(
                f"trainer.logger.init_args.save_dir={init.save_dir}: cannot create the run directory "
                f"{logger.log_dir} ({error.strerror}); choose a writable directory"
            ) from None
