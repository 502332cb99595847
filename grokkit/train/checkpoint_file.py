"""A checkpoint file read back, or one line saying why it cannot be: every command that reads one uses this.

A truncated copy, a file that is not a checkpoint, or one holding objects a weights-only load refuses would
otherwise end in one of torch's many exception types and a traceback, often after work had begun.
"""

from __future__ import annotations

from pathlib import Path

import torch

from grokkit.errors import ConfigError


def read_checkpoint(path: str | Path, where: str, weights_only: bool | None = False) -> dict:
    """The Lightning checkpoint at ``path``, memory-mapped where it can be (reading a step costs no tensor
    reads); ``where`` starts the error (the option or file that named it). ``weights_only=False`` unpickles:
    only for the runs' own files, whose hyperparameters hold Python objects."""
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
        except RuntimeError:  # not a zip file (an old format, or not a checkpoint): load it plainly
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
        if "Unsupported global" in str(error):  # a sound file holding objects a weights-only load refuses
            raise ConfigError(
                f"{where} holds Python objects that a weights-only load refuses; if you trust the file, add "
                "--weights_only false"
            ) from None
        first_sentence = " ".join(str(error).split()).split(". ")[0][:120] or "an empty file"
        raise ConfigError(
            f"{where} cannot be read ({type(error).__name__}: {first_sentence}): it is truncated or not a "
            "checkpoint; use another, or move it out of the run (grokkit writes checkpoints atomically: a crash "
            "leaves the one before intact)"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(
            f"{where} is not a Lightning checkpoint (no state_dict); give one written by `grokkit fit`"
        )
    if not isinstance(checkpoint.get("global_step"), int):
        raise ConfigError(
            f"{where} is not a Lightning checkpoint (no global_step); give one written by `grokkit fit`"
        )
    return checkpoint
