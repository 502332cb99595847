"""The EMA of the weights, updated on the device.

``AveragedModel.update_parameters`` reads its step count back to the host twice per step (a GPU stall each
time); this update keeps that count on the device and computes the same thing, bit for bit: the first update
copies the weights, later ones lerp towards them by ``1 - decay``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from grokkit.torch_private import lerp_all_


@torch.no_grad()
def update_ema(ema: AveragedModel, net: nn.Module, decay: float, keep: torch.Tensor) -> None:
    """One EMA step of ``ema`` (built with ``use_buffers=True``) towards ``net``; ``keep`` 0 leaves it as is."""
    averaged = [t.detach() for t in (*ema.module.parameters(), *ema.module.buffers())]
    current = [t.detach() for t in (*net.parameters(), *net.buffers())]
    weight = torch.where(ema.n_averaged == 0, 1.0, 1.0 - decay).float() * keep
    lerp_all_(averaged, current, weight)
    ema.n_averaged += keep.long()
