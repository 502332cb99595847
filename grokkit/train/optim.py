"""grokkit's optimizer: fused AdamW whose weight decay reaches only the parameters a recipe names."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
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


def clip_gradients(
    module: L.LightningModule, optimizer: torch.optim.Optimizer, clip_val: float | None, algorithm: str | None
) -> None:
    """Lightning's gradient clipping, also under mixed precision, where Lightning refuses it to a fused optimizer.

    Lightning refuses because a fused step unscales ``16-mixed``'s scaled gradients itself, after clipping
    would have run. So with a gradient scaler the gradients are unscaled here first (the scaler's step then
    knows they are); ``bf16-mixed`` has no scaler, and its gradients are the true ones already. Either way the
    true gradients are clipped before the step, as under ``32-true``.
    """
    trainer = module.trainer
    clip_val = trainer.gradient_clip_val if clip_val is None else clip_val
    plugin = trainer.precision_plugin
    if not clip_val or not isinstance(plugin, MixedPrecision):
        module.clip_gradients(optimizer, clip_val, algorithm)
        return
    if plugin.scaler is not None:
        plugin.scaler.unscale_(optimizer)
    algorithm = algorithm or trainer.gradient_clip_algorithm or "norm"
    Precision.clip_gradients(plugin, optimizer, clip_val, GradClipAlgorithmType(algorithm.lower()))
