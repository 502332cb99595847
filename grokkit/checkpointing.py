"""Checkpoints that are never half-written, and a log-spaced trajectory of weights for later analysis."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from grokkit.schedule import is_log_spaced


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary sibling, flush to disk, then rename over ``path``: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic (temporary file + rename)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        atomic_torch_save(checkpoint, path)


class TrajectoryCheckpoint(Callback):
    """Weights-only checkpoints at log-spaced steps (``per_decade`` per factor of 10), for offline probes.

    Args:
        per_decade: Checkpoints per decade of steps (10 gives 100, 126, 158, 200, 251, 316, ...).
        min_step: No trajectory checkpoint before this step.
    """

    def __init__(self, per_decade: int = 10, min_step: int = 100) -> None:
        self.per_decade, self.min_step = per_decade, min_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx
    ) -> None:
        step = trainer.global_step
        if step >= self.min_step and is_log_spaced(step, self.per_decade):
            directory = Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "trajectory"
            trainer.save_checkpoint(directory / f"step={step:08d}.ckpt", weights_only=True)
