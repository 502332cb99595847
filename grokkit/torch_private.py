"""Every use of torch's private API in grokkit, or of behaviour its docs do not promise, behind
public-looking names; nothing else may use one.

Checked against torch 2.13.0 (the Makefile installs it). Each item is what torch's own optimizers and
gradient scaler use; on a torch upgrade, re-check this file first. If the masking protocol changed, the
tests that poison a gradient (``tests/test_failures.py``) fail.
"""

from __future__ import annotations

import functools

import torch


def flag_non_finite_(tensors: list[torch.Tensor], found: torch.Tensor, one: torch.Tensor) -> None:
    """Set ``found`` (a one-element float tensor on the tensors' device) to 1.0 where some entry of some tensor
    is NaN or infinite, else leave it as it is; ``one`` is a 0-dim 1.0 on that device. No host sync.

    One fused kernel: the gradient scaler's own check with a scale of ``one`` (the values are unchanged), which
    sets ``found`` and never clears it; where torch lacks it, the max |x| of each tensor (NaN propagates
    through amax).
    """
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, one)
    except (AttributeError, NotImplementedError, RuntimeError):
        bad = ~torch.isfinite(torch.stack([t.detach().abs().amax().float() for t in tensors])).all()
        found.copy_(torch.maximum(found, bad.float()))


def lerp_all_(targets: list[torch.Tensor], sources: list[torch.Tensor], weight: torch.Tensor) -> None:
    """``target += weight * (source - target)`` for every pair, in one fused kernel (a 0-dim ``weight`` tensor
    stays on the device: no host sync)."""
    torch._foreach_lerp_(targets, sources, [weight] * len(targets))


def mask_next_update(optimizer: torch.optim.Optimizer, mask: torch.Tensor | None) -> None:
    """Make the next step of a fused Adam/AdamW leave every tensor alone where ``mask`` (a 0-dim float tensor)
    is 1: the ``found_inf`` input through which the gradient scaler skips a step, read from the optimizer.
    ``None``: no mask (the kernel then skips the check and the step counts' correction)."""
    optimizer.found_inf = mask


def mask_scaled_step(optimizer: torch.optim.Optimizer, mask: torch.Tensor) -> torch.Tensor:
    """In a step pre-hook of a fused Adam/AdamW step the gradient scaler drives (it has set the step's
    ``found_inf`` from its overflow check): leave every tensor alone where ``mask`` is 1 too. Returns the joined
    mask (the scaler's own check, which sets its scale, is not changed)."""
    optimizer.found_inf = torch.maximum(optimizer.found_inf, mask)
    return optimizer.found_inf


@functools.cache
def bernoulli_draws_per_element() -> bool:
    """Whether a CPU ``bernoulli_(p)`` (dropout's mask) draws one uniform double per element, in order, from
    the generator: ``uniform < p``, element by element. PyTorch does so on CPUs where it does not hand the
    draw to MKL's vectorized generator (AMD and other non-Intel CPUs, in the versions read). Observed rather
    than inferred from the vendor: two private generators with one seed, so the global one is left alone."""
    by_bernoulli, by_uniform = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    mask = torch.empty(64).bernoulli_(0.5, generator=by_bernoulli)
    return torch.equal(
        mask, (torch.empty(64, dtype=torch.float64).uniform_(generator=by_uniform) < 0.5).float()
    )
