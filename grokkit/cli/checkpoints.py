"""``--ckpt_path`` checked before anything is written: a missing, unreadable or foreign checkpoint is one line."""

from __future__ import annotations

import os

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from grokkit.errors import ConfigError
from grokkit.lightning_private import last_checkpoints
from grokkit.train.warm_start import state_dict_mismatch


def resolve_ckpt_path(trainer: L.Trainer, given: str) -> str | None:
    """The file ``--ckpt_path`` names; ``None`` where Lightning decides (``best``, ``hpc``, nothing to resume)."""
    if given == "last":  # as Lightning resolves it: the newest last*.ckpt of the checkpoint callbacks
        found = set()
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                found |= last_checkpoints(callback, trainer)
        existing = [path for path in found if os.path.isfile(path)]
        return max(existing, key=os.path.getmtime) if existing else None
    if given in ("best", "hpc") or given.startswith("registry"):
        return None
    return given


def load_checkpoint(path: str, weights_only: bool | None) -> dict:
    """The checkpoint at ``path`` (memory-mapped where it can be), or a one-line error saying why not."""
    if not os.path.isfile(path):
        raise ConfigError(
            f"--ckpt_path {path}: no such file; give a checkpoint written by `grokkit fit` "
            "(RUN/checkpoints/last.ckpt), or `last` to resume the run of --config RUN/config.yaml"
        )
    try:
        try:  # mmap: the shapes without reading the tensors
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError:  # not a zip file (an old format, or not a checkpoint): load it plainly
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
        first_sentence = " ".join(str(error).split()).split(". ")[0][:120]
        reason = f"{type(error).__name__}: {first_sentence}"
        if "Unsupported global" in str(error):  # a sound file holding objects a weights-only load refuses
            raise ConfigError(
                f"--ckpt_path {path} holds Python objects that a weights-only load refuses; if you trust "
                "the file, add --weights_only false"
            ) from None
        raise ConfigError(
            f"--ckpt_path {path} cannot be read ({reason}): it is truncated or not a checkpoint; use "
            "another one (grokkit writes checkpoints atomically, so RUN/checkpoints/last.ckpt of a crashed "
            "run is intact)"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(
            f"--ckpt_path {path} is not a Lightning checkpoint (no state_dict); give one written by "
            "`grokkit fit`"
        )
    return checkpoint


def check_checkpoint(checkpoint: dict, path: str, model: torch.nn.Module, resume: bool) -> None:
    """Refuse a checkpoint of another model, or (to ``resume`` a fit) one holding weights only."""
    mismatch = state_dict_mismatch(checkpoint["state_dict"], model.state_dict())
    if mismatch:
        raise ConfigError(
            f"--ckpt_path {path} holds a model of another shape ({mismatch}); use the config it was "
            "trained with (its run's config.yaml)"
        )
    if resume and not {"optimizer_states", "loops"} <= checkpoint.keys():
        raise ConfigError(
            f"--ckpt_path {path} holds weights only (a trajectory checkpoint?), not a training state to "
            "resume; resume from RUN/checkpoints/last.ckpt, or evaluate it with `grokkit validate`"
        )
