"""Heatmaps as RGB tensors, so probes can draw TensorBoard images without a plotting library."""

from __future__ import annotations

import torch

# Viridis sampled at 0, 0.25, 0.5, 0.75 and 1: dark purple = low, yellow = high.
VIRIDIS = torch.tensor(
    [
        [0.267, 0.005, 0.329],
        [0.231, 0.322, 0.546],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ]
)
MISSING = 0.5  # NaN cells are drawn grey


def heatmap_image(values: torch.Tensor, cell: int = 24, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """``values`` (rows, cols) as an image (3, rows * cell, cols * cell) in [0, 1], row 0 at the top."""
    values = values.detach().float().cpu()
    x = ((values.nan_to_num(low) - low) / (high - low)).clamp(0, 1) * (len(VIRIDIS) - 1)
    lower = x.floor().long().clamp(max=len(VIRIDIS) - 2)
    fraction = (x - lower)[..., None]
    rgb = VIRIDIS[lower] * (1 - fraction) + VIRIDIS[lower + 1] * fraction  # (rows, cols, 3)
    rgb[values.isnan()] = MISSING
    return rgb.permute(2, 0, 1).repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)
