"""A run's directory: a new one claimed once every input is checked, so that two runs never write into the
same one, and an existing one entered only to resume it."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from grokkit.cli.runconfig import resumes
from grokkit.errors import ConfigError
from grokkit.train.checkpointing import ResumableCheckpoint, trajectory_files


def check_run_directory(trainer: L.Trainer, init: Namespace) -> None:
    """Refuse, before the dataset is built, a run directory that cannot be created: a file on its path, or a
    directory without write permission (:func:`claim_run_directory` creates it once every input is checked)."""
    logger = trainer.logger
    if not isinstance(logger, TensorBoardLogger):
        return
    root = Path(logger.root_dir)  # the version directory itself is claimed, or the next one if it is taken
    nearest = next(path for path in (root, *root.parents) if os.path.lexists(path))
    if not nearest.is_dir():  # a file, or a link to nothing
        raise unwritable(init, logger.log_dir, os.strerror(errno.ENOTDIR))
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise unwritable(init, logger.log_dir, os.strerror(errno.EACCES))


def unwritable(init: Namespace, log_dir: str, reason: str) -> ConfigError:
    return ConfigError(
        f"trainer.logger.init_args.save_dir={init.save_dir}: cannot create the run directory {log_dir} ({reason}); "
        "choose a writable directory",
        "trainer.logger.init_args.save_dir",
    )


def claim_run_directory(trainer: L.Trainer, init: Namespace) -> None:
    """Create the run's version directory; if another run created it since the version was chosen, take the
    next one (``init``, the logger's config, is updated: the saved config.yaml names the directory claimed)."""
    logger = trainer.logger
    while isinstance(logger, TensorBoardLogger):
        try:
            os.makedirs(logger.root_dir, exist_ok=True)
        except OSError as error:  # FileExistsError too: a file or a link to nothing where a directory goes
            raise unwritable(
                init,
                logger.log_dir,
                os.strerror(errno.ENOTDIR) if error.errno == errno.EEXIST else error.strerror,
            ) from None
        try:
            os.mkdir(logger.log_dir)
            return
        except FileExistsError:
            init.version += 1
            logger = trainer.logger = type(logger)(**init.as_dict())
        except OSError as error:
            raise unwritable(init, logger.log_dir, error.strerror) from None


def existing_run(trainer: L.Trainer) -> Path | None:
    """The directory the trainer logs to, if a run is already there (its config.yaml or checkpoints)."""
    logger = trainer.logger
    if not isinstance(logger, TensorBoardLogger):
        return None
    run_dir = Path(logger.log_dir)
    return run_dir if any((run_dir / name).exists() for name in ("config.yaml", "checkpoints")) else None


def refuse_finished_run(trainer: L.Trainer, new_version: bool, ckpt_path: str | None) -> None:
    """A pinned fit (``--config RUN/config.yaml``) not resuming that run (a fork's config names the checkpoint it
    left from) would train a second run into the first one's directory, over its files: refuse it."""
    run_dir = None if new_version else existing_run(trainer)
    if run_dir is not None and not (ckpt_path and resumes(str(ckpt_path), run_dir)):
        raise ConfigError(
            f"{run_dir} already holds a run; add --ckpt_path last to resume it, or "
            "--trainer.logger.init_args.version=null to train the config again as a new run"
        )


def restart_in_place(trainer: L.Trainer, start: int = 0) -> bool:
    """For ``--ckpt_path last`` into a run that stopped before its first ``last.ckpt``: clear what it left (its
    events, summary.json and trajectory checkpoints, which it writes again) so that it trains again from its
    ``start`` (a fork's: its origin's step) in its own directory. ``False`` where the directory holds no run;
    refused where the run got past its first periodic ``last.ckpt`` (someone moved it: clearing would lose it)."""
    run_dir = existing_run(trainer)
    if run_dir is None:
        return False
    reached = furthest_step(run_dir)
    periodic = [
        c.every_n_train_steps for c in trainer.checkpoint_callbacks if isinstance(c, ResumableCheckpoint)
    ]
    if reached >= min(((start // every + 1) * every for every in periodic if every), default=start + 1):
        raise ConfigError(
            f"--ckpt_path last: {run_dir} got to step {reached} but holds no last.ckpt (moved or deleted?); put "
            "it back, or delete the directory to train the run again from step 0; nothing was changed"
        )
    for stale in [*run_dir.glob("events.out.tfevents.*"), run_dir / "summary.json"]:
        stale.unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    rank_zero_info(
        f"grokkit: {run_dir} stopped before its first checkpoint (no last.ckpt); training it again from its start"
    )
    return True


def furthest_step(run_dir: Path) -> int:
    """The last step a run left a trace of: its newest trajectory checkpoint or validation (0: none)."""
    steps = list(trajectory_files(run_dir))
    try:
        steps.append(int(json.loads((run_dir / "summary.json").read_text())["val"]["step"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no summary yet, or one without a validation
    return max(steps, default=0)
