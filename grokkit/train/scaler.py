"""``16-mixed``'s gradient scaler, as the training step asks about it: is there one, and did it skip a step.

The scaler skips a step whose scaled gradients overflowed and lowers its scale (it never lowers it otherwise),
so the scale read before and after a step tells. Each read is a host read: a ``16-mixed`` run on a GPU reads
the host every step anyway (:mod:`grokkit.train.nonfinite`).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch


def loss_scaler(trainer: L.Trainer) -> torch.amp.GradScaler | None:
    """The scaler of ``16-mixed`` (Lightning makes one on a GPU; a precision plugin can bring one), or ``None``."""
    return getattr(trainer.precision_plugin, "scaler", None)


def skipped_by_scaler(trainer: L.Trainer) -> Callable[[], bool]:
    """Called before an optimizer step: the check, for after it, whether the scaler skipped that step (never,
    without a scaler)."""
    scaler = loss_scaler(trainer)
    if scaler is None:
        return lambda: False
    before = scaler.get_scale()
    return lambda: scaler.get_scale() < before
