"""``--ckpt_path`` checked before anything is written: a missing, unreadable or foreign checkpoint is one line."""

from __future__ import annotations

import os

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from grokkit.errors import ConfigError
from grokkit.lightning_private import last_checkpoints
from grokkit.train.checkpoint_file import read_checkpoint
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


def refuse_no_checkpoint(subcommand: str, given: str | None, path: str | None, run_dir: str | None) -> None:
    """``validate`` and ``test`` without a checkpoint would score an untrained model; ``last`` with nothing
    to resume would train from the start under a resume's name."""
    if given is None and subcommand != "fit":
        raise ConfigError(
            f"{subcommand} needs --ckpt_path (RUN/checkpoints/last.ckpt or a trajectory checkpoint): "
            "without one it would score an untrained model"
        )
    if given == "last" and path is None:
        raise ConfigError(
            f"--ckpt_path last: {run_dir} holds no last.ckpt to resume (a new run directory, or one stopped "
            "before its first checkpoint); give the run's own --config RUN/config.yaml, or leave --ckpt_path "
            "out to train from the start"
        )


def load_checkpoint(path: str, weights_only: bool | None) -> dict:
    """The checkpoint at ``path`` (memory-mapped where it can be), or a one-line error saying why not."""
    if not os.path.isfile(path):
        what = "a directory" if os.path.isdir(path) else "no such file"
        raise ConfigError(
            f"--ckpt_path {path}: {what}; give a checkpoint written by `grokkit fit` "
            "(RUN/checkpoints/last.ckpt), or `last` to resume the run of --config RUN/config.yaml"
        )
    return read_checkpoint(path, f"--ckpt_path {path}", weights_only)


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
