"""``16-mixed``'s gradient scaler, as the training step asks about it: is there one.

The scaler skips a step whose scaled gradients overflowed (it hands a fused optimizer's step the verdict as
``found_inf``) and lowers its scale; the module joins its own non-finite mask to that verdict inside the step,
so neither waits for the host.
"""

from __future__ import annotations

import lightning as L
import torch


def loss_scaler(trainer: L.Trainer) -> torch.amp.GradScaler | None:
    """The scaler of ``16-mixed`` (Lightning makes one on a GPU; a precision plugin can bring one), or ``None``."""
    return getattr(trainer.precision_plugin, "scaler", None)
