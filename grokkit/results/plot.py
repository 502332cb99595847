"""``grokkit plot RUN_DIR [--out OUT.png]``: the grokking picture of a run as a PNG.

Reads the run's TensorBoard events (the same numbers TensorBoard shows) and draws every split's accuracy
over steps, with the hyperparameter switch, ``t_mem`` and the circuit signal the run classifier read
(``summary.json``'s ``classification.signal``) when present.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from grokkit.cli.configfiles import as_list, class_name, read_config_file
from grokkit.cli.finished_run import run_dir_parser
from grokkit.data.injection import INJECTION_SPLITS
from grokkit.data.splits import EVAL_SPLITS
from grokkit.errors import ConfigError
from grokkit.outputs import figure_format
from grokkit.probes.figures import new_figure, png_bytes, save_png
from grokkit.probes.onset import GrokkingOnset
from grokkit.results.runs import check_run_dir, load_run


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    scalars = load_run(run_dir).scalars
    return {str(tag): list(zip(rows.step, rows.value, strict=True)) for tag, rows in scalars.groupby("tag")}


def memorized_level(run_dir: Path) -> float:
    """The training accuracy ``t_mem`` stands for: the run's ``GrokkingOnset.memorized``, or its default."""
    level = inspect.signature(GrokkingOnset).parameters["memorized"].default
    path = run_dir / "config.yaml"
    callbacks = (read_config_file(path).get("trainer") or {}).get("callbacks") if path.is_file() else None
    for callback in as_list(callbacks):
        if isinstance(callback, dict) and class_name(callback) == "GrokkingOnset":
            level = (callback.get("init_args") or {}).get("memorized", level)
    return level


def plot(run_dir: Path, out: Path) -> list[str]:
    """Draw the figure into ``out``; return the legend's labels (what was drawn)."""
    curves = read_scalars(check_run_dir(run_dir))
    if not any(tag.startswith("val/") for tag in curves):
        raise ConfigError(
            f"{run_dir}: no validation curves in its TensorBoard events (a run draws its first at "
            "trainer.val_check_interval); plot a run after its first validation"
        )
    fig, ax = new_figure(figsize=(8, 4.2), dpi=120)
    for split in ("train", *EVAL_SPLITS, *INJECTION_SPLITS):  # the splits a run does not have are skipped
        points = curves.get(f"val/{split}/acc", [])
        if points:
            steps, values = zip(*points, strict=True)
            width = 2.2 if split in ("train", "test_inferred_iid") else 1.2
            ax.plot(steps, values, label=split, linewidth=width, marker="o" if len(points) == 1 else None)
    for step, _ in curves.get("schedule/switch", []):
        ax.axvline(step, color="grey", linestyle=":", label="hyperparameter switch")
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    t_mem = summary.get("grokking", {}).get("t_mem")
    if t_mem is not None:
        ax.axvline(
            t_mem, color="black", linestyle="--", label=f"t_mem (train >= {memorized_level(run_dir):g})"
        )
    section, _, key = summary.get("classification", {}).get("signal", "").partition(" ")
    if curves.get(f"probe/{section}/{key}"):
        steps, values = zip(*curves[f"probe/{section}/{key}"], strict=True)
        ax.plot(steps, values, "k-.", marker=".", label=f"circuit signal: {section} {key}")
    ax.set(
        xlabel="step",
        ylabel="exact-match accuracy",
        ylim=(-0.02, 1.02),
        title=f"{run_dir.parent.name}/{run_dir.name}",
    )
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    save_png(png_bytes(fig), out)
    return ax.get_legend_handles_labels()[1]


def plot_command(argv: list[str]) -> None:
    parser = run_dir_parser("plot", "Draw a run's accuracy curves as a PNG.")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: RUN_DIR/figures/accuracy.png)")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        raise ConfigError(f"{args.run_dir}: not a run directory; give a directory `grokkit fit` wrote")
    out = args.out or args.run_dir / "figures" / "accuracy.png"
    figure_format(out, "--out", formats=("png",))
    plot(args.run_dir, out)
    print(f"grokkit plot: {out}")
