"""Every use of torch's private API in grokkit, or of behaviour its docs do not promise, behind
public-looking names; nothing else may use one.

Checked against torch 2.13.0 (the Makefile installs it). Each item is what torch's own optimizers and
gradient scaler use; on a torch upgrade, re-check this file first. If the masking protocol changed, the
tests that poison a gradient (``tests/test_failures.py``) fail.
"""

from __future__ import annotations

import torch


def any_non_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A 0-dim float tensor, without a host sync: 1.0 where some entry of some tensor (all on one device) is
    NaN or infinite, else 0.0 (the ``found_inf`` of the gradient scaler, which masks a fused AdamW step).

    One fused kernel: the gradient scaler's own check, with a scale of 1 (the values are unchanged); where
    torch lacks it, the max |x| of each tensor (NaN propagates through amax).
    """
    try:
        found = torch.zeros((), device=tensors[0].device)
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, torch.ones((), device=found.device))
        return found
    except (AttributeError, NotImplementedError, RuntimeError):
        return (~torch.isfinite(torch.stack([t.abs().amax().float() for t in tensors])).all()).float()


def lerp_all_(targets: list[torch.Tensor], sources: list[torch.Tensor], weight: torch.Tensor) -> None:
    """``target += weight * (source - target)`` for every pair, in one fused kernel (a 0-dim ``weight`` tensor
    stays on the device: no host sync)."""
    torch._foreach_lerp_(targets, sources, [weight] * len(targets))


def mask_next_update(optimizer: torch.optim.Optimizer, mask: torch.Tensor) -> None:
    """Make the next step of a fused Adam/AdamW leave every tensor alone where ``mask`` (a 0-dim float tensor)
    is 1: the ``found_inf`` input through which the gradient scaler skips a step, read from the optimizer."""
    optimizer.found_inf = mask
