"""Starting a network from another run's weights (``model.init_from``), and comparing state dicts.

Only the weights travel: the optimizer, schedule, step counter and EMA start fresh, so a fine-tune has its own
learning rate and weight decay. A checkpoint of another vocabulary or shape is refused in one line when the
model is built, before any data is generated or step is taken.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from grokkit.errors import ConfigError
from grokkit.train.checkpoint_file import read_checkpoint


def state_dict_mismatch(there: dict, here: dict) -> str | None:
    """The first differences between a checkpoint's state dict and the model's, or ``None`` if they agree."""
    differences = []
    for key in sorted(here.keys() | there.keys()):
        if key not in there:
            differences.append(f"{key}: missing there")
        elif key not in here:
            differences.append(f"{key}: not in this model")
        elif tuple(there[key].shape) != tuple(here[key].shape):
            differences.append(f"{key}: {list(there[key].shape)} there, {list(here[key].shape)} here")
    if not differences:
        return None
    more = f", and {len(differences) - 2} more" if len(differences) > 2 else ""
    return "; ".join(differences[:2]) + more


def network_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights in a GrokModule state dict: the EMA copy if the run kept one (it evaluated with
    it), else the trained weights."""
    for prefix in ("ema.module.", "net."):
        weights = {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
        if weights:
            return weights
    return {}


def load_initial_weights(net: nn.Module, path: str, vocab_size: int) -> None:
    """Copy the weights of the grokkit checkpoint at ``path`` into ``net`` (a run's own file: it is unpickled)."""
    where = f"model.init_from {path}"
    if not Path(path).is_file():
        raise ConfigError(
            f"{where}: no such file; give a checkpoint written by `grokkit fit` (RUN/checkpoints/...)"
        )
    checkpoint = read_checkpoint(path, where)
    theirs = (checkpoint.get("hyper_parameters") or {}).get("vocab_size")
    if theirs is not None and theirs != vocab_size:
        raise ConfigError(
            f"{where} has a vocabulary of {theirs} tokens, this data has {vocab_size}; start from a run on the same "
            "graph (use the data section of its config.yaml)"
        )
    load_network_weights(net, checkpoint, where, "use the model section of the config it was trained with")


def load_network_weights(net: nn.Module, checkpoint: dict, where: str, fix: str) -> None:
    """Copy a checkpoint's network weights (:func:`network_weights`) into ``net``; another shape is refused in
    one line that starts with ``where`` and ends with ``fix``."""
    weights = network_weights(checkpoint["state_dict"])
    mismatch = state_dict_mismatch(weights, net.state_dict())
    if mismatch:
        raise ConfigError(f"{where} holds a network of another shape ({mismatch}); {fix}")
    net.load_state_dict(weights)
