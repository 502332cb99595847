"""grokkit's optimizer: fused AdamW whose weight decay reaches only the parameters a recipe names."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

DecayName = Literal["matrices", "blocks", "all"]


def decay_groups(net: nn.Module, decay: DecayName, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: the parameters ``decay`` names get ``weight_decay``, the others none."""
    decayed, undecayed = [], []
    tables = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)}
    for parameter in net.parameters():
        is_decayed = {
            "all": True,
            "matrices": parameter.dim() >= 2,
            "blocks": parameter.dim() >= 2 and id(parameter) not in tables,
        }[decay]
        (decayed if is_decayed else undecayed).append(parameter)
    return [
        {"params": decayed, "weight_decay": weight_decay, "name": "decay"},
        {"params": undecayed, "weight_decay": 0.0, "name": "no_decay"},
    ]


def fused_adamw(
    net: nn.Module, lr: float, betas: tuple[float, float], eps: float, weight_decay: float, decay: DecayName
) -> torch.optim.AdamW:
    """One fused kernel per step for every parameter; its ``found_inf`` lets a bad step be masked on the
    device (:mod:`grokkit.train.nonfinite`)."""
    groups = decay_groups(net, decay, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
