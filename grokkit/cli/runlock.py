"""One process at a time trains a run (:mod:`grokkit.locking`): a second ``--ckpt_path last`` of a run being
trained would resume (or clear) it under the first, and both would write its checkpoints and events."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from grokkit.locking import hold, hold_if_present


def hold_run(trainer: L.Trainer, create: bool) -> None:
    """Lock the run directory the trainer logs to, for the rest of the command; ``create``: make it first
    (else only a directory that exists is locked)."""
    logger = trainer.logger
    if isinstance(logger, TensorBoardLogger):
        run_dir = Path(logger.log_dir)
        (hold if create else hold_if_present)(
            run_dir,
            f"{run_dir} is being trained by another process (it holds the run directory's lock); wait for it "
            "to end, or stop it and resume with --ckpt_path last",
        )
