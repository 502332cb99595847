"""Grokfast (Lee et al. 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients").

Grokking looks like a slow drift of the weights under a fast, memorizing gradient. Grokfast low-pass filters
each parameter's gradient with an exponential moving average and adds the slow part back, amplified::

    mu_t = alpha * mu_{t-1} + (1 - alpha) * g_t
    g'_t = g_t + lamb * mu_t

It runs after the backward pass and before the optimizer step (and before gradient clipping). The averages
are part of the training state: they are saved in checkpoints, so a resumed run continues exactly, and a run
resumed with another alpha or lamb filters on from them.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from grokkit.ranges import check_arguments
from grokkit.torch_private import flag_non_finite_


class Grokfast(Callback):
    """The EMA gradient filter.

    Args:
        alpha: Momentum of the gradient average, in [0, 1) (the paper's default 0.98).
        lamb: Amplification of the slow gradient, >= 0 (the paper's default 2.0).
    """

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0) -> None:
        check_arguments("Grokfast", type(self), locals())  # every argument in its range (grokkit.ranges)
        self.alpha, self.lamb = alpha, lamb
        self.averages: dict[str, torch.Tensor] = {}  # parameter name -> mu

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Checkpoints of older grokkit named the state by alpha and lamb; Lightning loads it only by this name
        states = checkpoint.get("callbacks", {})
        named = [state for key, state in states.items() if key.startswith(f"{self.state_key}{{")]
        if self.state_key not in states and len(named) == 1:
            self.load_state_dict(named[0])

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        named = [(name, p.grad) for name, p in pl_module.named_parameters() if p.grad is not None]
        if not named:
            return
        # A step with a non-finite gradient entry anywhere leaves every average as it was (on the device, no
        # host sync): the module's non-finite check then stops or skips that step, whose update is dropped.
        device = named[0][1].device
        bad = torch.zeros(1, device=device)
        flag_non_finite_([grad for _, grad in named], bad, torch.ones((), device=device))
        for name, grad in named:
            average = self.averages.get(name)
            if average is None or average.device != grad.device:
                average = self.averages[name] = (
                    torch.zeros_like(grad) if average is None else average.to(grad.device)
                )
            average.copy_(torch.where(bad[0] > 0, average, average.lerp(grad, 1 - self.alpha)))
            grad.add_(average, alpha=self.lamb)

    def state_dict(self) -> dict[str, Any]:
        return {"averages": {name: mu.to("cpu", copy=True) for name, mu in self.averages.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # copies (the filter updates them in place), moved to the gradients' device on first use
        self.averages = {name: mu.clone() for name, mu in state_dict["averages"].items()}
