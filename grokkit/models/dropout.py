"""Dropout whose CPU mask costs a fraction of PyTorch's where PyTorch draws it one element at a time.

PyTorch's CPU Bernoulli draws each element on its own (~8-13 ns each on this project's AVX2 AMD EPYC) unless
it runs on an Intel CPU with MKL, where MKL's vectorized, multi-threaded generator draws the mask. On the
per-element path, Wang et al.'s dropout 0.1 is ~12 % of a 4 x 128 decoder step at batch 512 on their graph.
There, grokkit draws 32 random bits per element instead, two elements per 64-bit integer from the same
seeded generator, and compares them with an integer threshold: an element is kept with probability 1 - p to
within 2^-32 and scaled by 1 / (1 - p), as PyTorch's dropout does. Elsewhere PyTorch's dropout is used.
"""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BITS = 2**32


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the mask of :func:`bit_mask_dropout` where PyTorch's is per element."""
    if not training or p == 0.0:
        return x
    if x.device.type == "cpu" and p < 1.0 and torch_draws_bernoulli_per_element():
        return bit_mask_dropout(x, p)
    return F.dropout(x, p, training=True)


def bit_mask_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of a CPU tensor, its mask drawn as 32-bit integers (0 <= p < 1)."""
    n = x.numel()
    bits = torch.empty((n + 1) // 2, dtype=torch.int64).random_(-(2**63), None)  # every bit uniform
    uniform = bits.view(torch.int32)[:n].view(x.shape)  # uniform on [-2^31, 2^31)
    kept = uniform >= round(p * BITS) - BITS // 2  # bool -> uint8 -> float: ~4x cheaper than bool -> float
    keep = kept.view(torch.uint8).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * keep


@functools.cache
def torch_draws_bernoulli_per_element() -> bool:
    """Whether PyTorch's CPU dropout draws its mask element by element: everywhere but on Intel CPUs with MKL
    (``bernoulli_scalar_kernel`` in PyTorch's ``DistributionKernels.cpp``)."""
    return not (torch.backends.mkl.is_available() and "GenuineIntel" in cpu_vendor())


def cpu_vendor() -> str:
    """The CPU's vendor string (``GenuineIntel``, ``AuthenticAMD``, ...), or what the platform says of it."""
    try:
        found = re.search(r"^vendor_id\s*:\s*(\S+)", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:  # not Linux: Windows names the vendor in the processor string
        return platform.processor()
    return found.group(1) if found else platform.processor()


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
