"""``python -m grokkit.plot RUN_DIR OUT.png``: the grokking picture of a run as a PNG.

Reads the run's TensorBoard events (the same numbers TensorBoard shows) and draws every split's accuracy
over steps, with the hyperparameter switch and the onset times of ``summary.json`` when present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grokkit.data.kg import EVAL_SPLITS
from grokkit.results import load_run


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    scalars = load_run(run_dir).scalars
    return {str(tag): list(zip(rows.step, rows.value, strict=True)) for tag, rows in scalars.groupby("tag")}


def plot(run_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = read_scalars(run_dir)
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    for split in ("train", *EVAL_SPLITS):
        points = curves.get(f"val/{split}/acc", [])
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(
                steps, values, label=split, linewidth=2.2 if split in ("train", "test_inferred_iid") else 1.2
            )
    for step, _ in curves.get("schedule/switch", []):
        ax.axvline(step, color="grey", linestyle=":", label="hyperparameter switch")
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        grokking = json.loads(summary_path.read_text()).get("grokking", {})
        if grokking.get("t_mem") is not None:
            ax.axvline(grokking["t_mem"], color="black", linestyle="--", label="t_mem (train >= 0.99)")
    ax.set(
        xlabel="step",
        ylabel="exact-match accuracy",
        ylim=(-0.02, 1.02),
        title=f"{run_dir.parent.name}/{run_dir.name}",
    )
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    plot(Path(sys.argv[1]), Path(sys.argv[2]))
