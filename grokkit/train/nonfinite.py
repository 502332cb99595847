"""Whether a step's loss and gradients are finite, checked on the device with one host sync per step."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A 0-dim bool tensor, without a host sync: every entry of every tensor (all on one device) is finite.

    One fused kernel: the gradient scaler's own check, with a scale of 1 (the values are unchanged); where
    torch lacks it, the max |x| of each tensor (NaN propagates through amax).
    """
    try:
        found = torch.zeros(1, device=tensors[0].device)
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, torch.ones(1, device=found.device))
        return found[0] == 0
    except (AttributeError, NotImplementedError, RuntimeError):
        return torch.isfinite(torch.stack([t.abs().amax().float() for t in tensors])).all()


def loss_and_grads_finite(
    loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter] | None
) -> tuple[bool, bool]:
    """Whether ``loss`` and the gradients of ``parameters`` (``None``: not checked) are finite; one host sync."""
    checks = [torch.isfinite(loss.float())]
    grads = [p.grad.detach() for p in parameters if p.grad is not None] if parameters is not None else []
    checks += [all_finite(grads)] if grads else []
    loss_ok, *grad_flags = torch.stack(checks).tolist()
    return loss_ok, all(grad_flags)
