"""grokkit's optimizer: fused AdamW whose weight decay reaches only the parameters a recipe names, and the
unscaling and clipping of its gradients that Lightning leaves undone for a fused optimizer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType, rank_zero_info
from torch import nn

from grokkit.train.scaler import loss_scaler

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


# What a resume may change; Lightning restores the checkpoint's values into the optimizer.
RETUNED = ("lr", "weight_decay", "betas", "eps")


def retune(trainer: L.Trainer, trained: Mapping[str, Any], configured: Mapping[str, Any]) -> None:
    """Give a resumed fit's optimizer the settings its config gives (``trained``: the checkpoint's): the
    learning rate scaled by new / old, so the warm-up and a fired switch's ``lr_scale`` stay; weight decay,
    betas and eps set in every group that still holds the old value, so a fired switch's own stay."""
    groups = [group for optimizer in trainer.optimizers for group in optimizer.param_groups]
    for key in RETUNED:
        old, new = (_plain(values.get(key)) for values in (trained, configured))
        if old is None or old == new:
            continue
        if key == "lr":
            changed = groups
            for group in groups:
                group["lr"] *= new / old
            for config in trainer.lr_scheduler_configs:
                config.scheduler.base_lrs = [lr * new / old for lr in config.scheduler.base_lrs]
        else:
            changed = [
                group
                for group in groups
                if _plain(group[key]) == old and (key != "weight_decay" or group.get("name") == "decay")
            ]
            for group in changed:
                group[key] = new
        if changed:
            rank_zero_info(
                f"grokkit: resumed with model.{key}={new} (the checkpoint's run trained with {old})"
            )


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def unscaling_closure(
    closure: Callable[[], Any] | None,
    trainer: L.Trainer,
    optimizer: torch.optim.Optimizer | LightningOptimizer,
) -> Callable[[], Any] | None:
    """The step's closure (forward and backward), then, under a gradient scaler (``16-mixed``), the gradients
    unscaled: what Lightning does after the closure for an optimizer that does not unscale in its own step, and
    skips for a fused one. So the hooks before the step (Grokfast, the non-finite check) and the clipping read
    the true gradients; the scaler's step then takes them as unscaled."""
    scaler = loss_scaler(trainer)
    if scaler is None or closure is None:
        return closure
    raw = optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer

    def then_unscale() -> Any:
        result = closure()
        if result is not None:  # None: Lightning skips the step, and the scaler's update with it
            scaler.unscale_(raw)
        return result

    return then_unscale


def clip_gradients(
    module: L.LightningModule, optimizer: torch.optim.Optimizer, clip_val: float | None, algorithm: str | None
) -> None:
    """Lightning's gradient clipping, also under mixed precision, where Lightning refuses it to a fused optimizer.

    Lightning refuses because a fused step unscales ``16-mixed``'s scaled gradients itself, after clipping
    would have run; grokkit unscales them before (:func:`unscaling_closure`), and ``bf16-mixed`` scales
    nothing. So the true gradients are clipped before the step, as under ``32-true``.
    """
    trainer = module.trainer
    clip_val = trainer.gradient_clip_val if clip_val is None else clip_val
    plugin = trainer.precision_plugin
    if not clip_val or not isinstance(plugin, MixedPrecision):
        module.clip_gradients(optimizer, clip_val, algorithm)
        return
    algorithm = algorithm or trainer.gradient_clip_algorithm or "norm"
    Precision.clip_gradients(plugin, optimizer, clip_val, GradClipAlgorithmType(algorithm.lower()))
