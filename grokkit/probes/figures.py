"""Figures probes draw: labelled heatmaps in TensorBoard's Images tab and as PNGs in the run directory.

A heatmap has the stage on the y axis (0 = input embedding, top), the input position on the x axis (named
``h r1 r2 t </a>``), each cell's value written in it, a colour bar and a title with the step. The same
picture goes to TensorBoard (``probe/<name>/<key>``) and to ``<run dir>/figures/<name>_<key>_step<N>.png``.
Matplotlib draws without pyplot, so nothing global (backends, open figures) is touched.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from grokkit.atomic import atomic_write

POSITION_NAMES = ("h", "r1", "r2", "t", "</a>")  # the item slots; a decoder's query shows the first three


def new_figure(
    figsize: tuple[float, float], dpi: int = 100, layout: str | None = "constrained"
) -> tuple[Figure, Axes]:
    figure = Figure(figsize=figsize, dpi=dpi, layout=layout)
    return figure, figure.add_subplot()


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(data: bytes, path: Path) -> None:
    atomic_write(path, lambda f: f.write(data))


def heatmap(values: torch.Tensor, title: str, colour_label: str, first_stage: int = 0) -> Figure:
    """``values`` (stages, positions) in [0, 1] as a labelled heatmap; NaN cells are grey, marked n/a."""
    values = values.detach().float().cpu()
    n_stages, n_positions = values.shape
    width, height = 2.6 + 0.8 * n_positions, 2.0 + 0.3 * n_stages  # inches
    figure, axes = new_figure((width, height), layout=None)  # fixed margins: a layout engine triples the time
    figure.subplots_adjust(
        left=0.6 / width, right=1 - 0.2 / width, bottom=0.6 / height, top=1 - 0.75 / height
    )
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = axes.imshow(values.numpy(), cmap=colours, vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(n_positions), POSITION_NAMES[:n_positions])
    axes.set_yticks(range(n_stages), [str(first_stage + row) for row in range(n_stages)])
    axes.set(xlabel="input position", ylabel="stage")
    axes.set_title(title, fontsize=9)
    for row, cells in enumerate(values.tolist()):
        for column, value in enumerate(cells):
            missing = value != value  # NaN
            colour = "black" if missing or value > 0.6 else "white"  # readable on yellow and on purple
            text = "n/a" if missing else f"{value:.2f}"
            axes.text(column, row, text, ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, label=colour_label)
    return figure


def publish_heatmap(
    writer: Any, step: int, probe: str, key: str, values: torch.Tensor, title: str, colour_label: str,
    first_stage: int = 0,
) -> None:  # fmt: skip
    """Draw ``values`` once; show it in TensorBoard under ``probe/<probe>/<key>`` and save it as a PNG."""
    figure = heatmap(values, f"{title}\nstep {step}", colour_label, first_stage)
    data = png_bytes(figure)
    writer.add_image(
        f"probe/{probe}/{key}", matplotlib.image.imread(io.BytesIO(data))[..., :3], step, dataformats="HWC"
    )
    path = Path(writer.log_dir) / "figures" / f"{probe}_{key.replace('/', '_')}_step{step:08d}.png"
    save_png(data, path)
