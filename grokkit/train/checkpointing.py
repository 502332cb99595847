"""Checkpoints that are never half-written, resume exactly, and a trajectory of weights that does not fill the disk.

* :func:`atomic_torch_save` (and :class:`AtomicCheckpointIO`, Lightning's writer made atomic): a reader, or a
  run resumed after a crash, sees the old file or the new one, never half of one.
* :class:`ResumableCheckpoint` writes ``last.ckpt``, the full training state that ``--ckpt_path last`` resumes.
* :class:`TrajectoryCheckpoint` writes weights-only checkpoints for offline analysis: at log-spaced steps
  (kept forever; ~10 per decade, so a million-step run holds ~40 of them) and, optionally, every N steps
  (only the newest ``keep_last`` of those are kept).
"""

from __future__ import annotations

import random
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from grokkit.atomic import atomic_write, torch_save
from grokkit.errors import NonFiniteError, StorageError
from grokkit.lightning_private import SaveOnDemandCheckpoint, last_saved_step, validation_follows
from grokkit.ranges import check_arguments
from grokkit.train.schedule import is_log_spaced


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that readers see whole or not at all; a failed write raises its ``OSError``."""
    atomic_write(path, lambda f: torch_save(obj, f))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic (temporary file + rename)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        """A failed write (a full disk, no permission) stops the run in one line; the old file is untouched."""
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as error:
            raise StorageError(
                f"cannot write checkpoint {path} ({error.strerror or error}); the checkpoint there before, if "
                f"any, is intact; free disk space or fix the permissions of {Path(path).parent}, then resume "
                "with --ckpt_path last"
            ) from error


def rng_states() -> dict[str, Any]:
    """The global random states (torch CPU and CUDA, numpy, python), in types a weights-only load accepts."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned (CUDA states only for the devices there are)."""
    torch.set_rng_state(states["torch"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where the run's ``last.ckpt`` lives (the checkpoint callback's directory once fit has set it up)."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "last.ckpt"


def last_good_checkpoint(trainer: L.Trainer) -> str:
    """``"PATH (step N)"`` of the newest checkpoint this run wrote, for error messages."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.last_model_path and last_saved_step(callback):
        return f"{callback.last_model_path} (step {last_saved_step(callback)})"
    path = last_checkpoint_path(trainer)
    return f"{path} (written before this process started)" if path.is_file() else "none saved yet"


def save_training_state(trainer: L.Trainer) -> Path | None:
    """Save the full training state to the run's ``last.ckpt`` while ``fit`` runs; ``None`` outside fit."""
    if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
        return None
    path = last_checkpoint_path(trainer)
    flush_loggers(trainer)
    trainer.save_checkpoint(path)
    return path


def flush_loggers(trainer: L.Trainer) -> None:
    """Put what was logged so far on disk (TensorBoard buffers events), so a checkpoint never runs ahead of it."""
    for logger in trainer.loggers:
        logger.save()


class ResumableCheckpoint(SaveOnDemandCheckpoint):
    """``ModelCheckpoint`` whose checkpoints resume a run exactly (``grokkit fit ... --ckpt_path last``).

    The loggers are flushed before each save, so nothing logged before a checkpoint is lost in a crash. A save due at a step that ends with a validation waits until that validation has ended, so the checkpoint
    holds what the validation changed (the results board, probe and switch states) and Lightning neither
    repeats nor skips that validation on resume. And ``last.ckpt`` is also written when training ends, so it
    always holds the final state (Lightning writes it at the end only when no checkpoint was saved before).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._save_after_validation = False

    @cached_property
    def state_key(self) -> str:
        """``ModelCheckpoint{...}``, as before this subclass: older checkpoints restore its state too."""
        return "ModelCheckpoint" + super().state_key.removeprefix(type(self).__qualname__)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = self.every_n_train_steps
        if every >= 1 and trainer.global_step % every == 0 and validation_follows(trainer):
            self._save_after_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._save_after_validation and not trainer.sanity_checking:
            self._save_after_validation = False
            self.save_now(trainer)
        super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last:
            self.save_now(trainer, top_k=False)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """SIGTERM (``kill``, a scheduler's preemption) stops a run between two steps: save there, so that
        ``--ckpt_path last`` resumes at that step rather than at the last periodic checkpoint. Other exceptions
        save only with ``checkpoint.save_on_exception`` (Lightning's option), and never the state after a
        non-finite step."""
        if isinstance(exception, SIGTERMException) and self.save_last and trainer.training:
            self.save_now(trainer, top_k=False)
        elif not isinstance(exception, NonFiniteError):
            super().on_exception(trainer, pl_module, exception)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Metrics logged before this checkpoint reach the disk first: after a crash, a resumed run re-logs
        # only the steps after the checkpoint, and TensorBoard keeps the later values of those.
        flush_loggers(trainer)


STEP_FILE = re.compile(r"^step=(\d+)\.ckpt$")


def trajectory_files(run_dir: Path) -> dict[int, Path]:
    """A run's trajectory checkpoints (``RUN/checkpoints/trajectory/step=N.ckpt``) by step."""
    directory = run_dir / "checkpoints" / "trajectory"
    return {
        int(m.group(1)): path for path in directory.glob("step=*.ckpt") if (m := STEP_FILE.match(path.name))
    }


class TrajectoryCheckpoint(Callback):
    """Weights-only checkpoints for offline probes (``grokkit analyze``): log-spaced, plus the newest periodic ones.

    Files are ``RUN/checkpoints/trajectory/step=XXXXXXXX.ckpt``. Log-spaced ones (``per_decade`` per factor
    of 10 from ``min_step``) are never deleted; with ``every_n_steps`` a weights-only checkpoint is also
    written every that many steps, of which only the newest ``keep_last`` are kept. The full training state
    (optimizer, RNG, loops) is in ``last.ckpt`` only (see the ``checkpoint`` section).

    Args:
        per_decade: Checkpoints per decade of steps (10 gives 100, 126, 158, 200, 251, 316, ...).
        min_step: No log-spaced checkpoint before this step.
        every_n_steps: Also save the weights every this many steps (``None``: only log-spaced ones).
        keep_last: How many of those periodic checkpoints to keep (the newest); older ones are deleted.
    """

    def __init__(
        self, per_decade: int = 10, min_step: int = 100, every_n_steps: int | None = None, keep_last: int = 3
    ) -> None:
        check_arguments("trajectory", type(self), locals())  # every argument in its range
        self.per_decade, self.min_step = per_decade, min_step
        self.every_n_steps, self.keep_last = every_n_steps, keep_last
        self.saved_step: int | None = None  # with gradient accumulation a step ends several batches

    def is_log_step(self, step: int) -> bool:
        return step >= self.min_step and is_log_spaced(step, self.per_decade)

    def is_periodic_step(self, step: int) -> bool:
        return self.every_n_steps is not None and step > 0 and step % self.every_n_steps == 0

    @staticmethod
    def directory(trainer: L.Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "trajectory"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        log_step, periodic = self.is_log_step(step), self.is_periodic_step(step)
        if not (log_step or periodic) or step == self.saved_step:
            return
        self.saved_step = step
        directory = self.directory(trainer)
        trainer.save_checkpoint(directory / f"step={step:08d}.ckpt", weights_only=True)
        if periodic and trainer.is_global_zero:
            self.prune(directory, step)

    def prune(self, directory: Path, step: int) -> list[Path]:
        """Delete periodic checkpoints older than the newest ``keep_last`` up to ``step``; returns the deleted.

        Log-spaced checkpoints are kept. Files past ``step`` (written before a crash, after the checkpoint this
        run resumed from) are left alone: the resumed run overwrites them when it gets there.
        """
        periodic = sorted(
            (int(found.group(1)), path)
            for path in directory.iterdir()
            if (found := STEP_FILE.match(path.name))
            and int(found.group(1)) <= step
            and self.is_periodic_step(int(found.group(1)))
            and not self.is_log_step(int(found.group(1)))
        )
        deleted = [path for _, path in periodic[: -self.keep_last]]
        for path in deleted:
            path.unlink(missing_ok=True)
        return deleted
