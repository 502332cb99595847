"""``grokkit compare DIR... --out FIG.png``: figures across runs, as a PNG and in TensorBoard.

Two kinds, from run directories or sweep directories (a sweep stands for its trials):

* curves (the default): the chosen ``--tags`` over steps, one panel per tag with every run overlaid, or with
  ``--panels`` one panel per run with every tag (He et al.'s regime panels: training accuracy, test accuracy,
  circuit signal);
* a summary field against a grid value (``--x data.phi --y grokking.t_gen.test_inferred_iid.0.9``), one line
  per value of the other grid keys (e.g. per seed).

The figure also goes to TensorBoard (``--logdir``, default ``runs/compare``; Images tab, tag
``compare/<FIG name>``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from grokkit.atomic import atomic_write
from grokkit.cli.parser import ToolParser
from grokkit.errors import ConfigError
from grokkit.outputs import figure_format
from grokkit.results.runs import SWEEP_PLAN, check_run_dir, grid_keys, load_run, load_sweep, sweep_trials

CURVE_TAGS = ("val/train/acc", "val/test_inferred_iid/acc", "val/test_inferred_ood/acc")


def is_sweep(path: Path) -> bool:
    return (path / SWEEP_PLAN).is_file()


def expand_runs(paths: list[Path]) -> dict[str, Path]:
    """Label -> run directory: a sweep's trials under their names (``sweep/name`` when several paths are
    compared, whose trials can share names), other runs as ``parent/name``."""
    runs: dict[str, Path] = {}
    prefix = len(paths) > 1
    for path in paths:
        if is_sweep(path):
            trials = [name for name in load_sweep(path)["trial"] if (path / name).is_dir()]
            found = {f"{path.name}/{name}" if prefix else name: path / name for name in trials}
        else:
            found = {f"{path.parent.name}/{path.name}": check_run_dir(path)}
        if same := sorted(found.keys() & runs.keys()):
            raise ConfigError(
                f"{path}: its {same[0]} has the label of another run given; compare them separately"
            )
        runs |= found
    if not runs:
        raise ConfigError("no run directories to compare (the sweeps have no trial started yet)")
    return runs


class Line(NamedTuple):
    """One curve of a panel: ``rows`` holds the columns step and value."""

    label: str
    rows: pd.DataFrame
    style: dict[str, Any] = {}


def panels_figure(panels: dict[str, list[Line]], accuracy_axis: bool) -> Figure:
    """One panel per title, in a row, each drawing its lines over steps (``accuracy_axis``: y from 0 to 1)."""
    fig = Figure(figsize=(4.2 * len(panels), 3.6), dpi=120)  # no pyplot: no global figure state
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels.items(), strict=True):
        for line in lines:
            lone = {"marker": "o"} if len(line.rows) == 1 else {}  # one point draws no line
            ax.plot(
                line.rows["step"],
                line.rows["value"],
                label=line.label,
                **{"linewidth": 1.4, **lone, **line.style},
            )
        ax.set(title=title, xlabel="step")
        if accuracy_axis:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def curves_figure(runs: dict[str, Path], tags: list[str], panels: bool) -> Figure:
    """One panel per tag (runs overlaid), or with ``panels`` one per run (tags overlaid)."""
    scalars = {label: load_run(path).scalars for label, path in runs.items()}
    known = {tag for frame in scalars.values() for tag in frame["tag"].unique()}
    missing = [tag for tag in tags if tag not in known]
    if missing:
        raise ConfigError(
            f"--tags {missing[0]}: no run logged it; the runs have e.g. {', '.join(sorted(known)[:5])}"
        )
    outer, inner = (list(runs), tags) if panels else (tags, list(runs))
    lines = {}
    for title in outer:
        lines[title] = []
        for label in inner:
            run, tag = (title, label) if panels else (label, title)
            lines[title].append(Line(label, scalars[run][scalars[run]["tag"] == tag]))
    return panels_figure(lines, all(tag.endswith("acc") for tag in tags))


def trials(n: int) -> str:
    return "1 trial" if n == 1 else f"{n} trials"


def summary_figure(sweeps: list[Path], x: str, y: str) -> Figure:
    """``y`` (a summary field) against ``x`` (a grid key), a line per value of the sweeps' other grid keys."""
    if not sweeps or not all(is_sweep(path) for path in sweeps):
        raise ConfigError("--x/--y compare the trials of sweeps: give sweep directories (holding sweep.json)")
    table = pd.concat([load_sweep(path) for path in sweeps], ignore_index=True)
    for key, flag in ((x, "--x"), (y, "--y")):
        if key not in table:
            raise ConfigError(
                f"{flag} {key}: no such column; the sweeps have {', '.join(table.columns[:12])}, ..."
            )
    keys = [*dict.fromkeys(key for path in sweeps for key in grid_keys(sweep_trials(path)))]
    if x not in keys:  # a summary column on x: every trial its own one-point line
        raise ConfigError(f"--x {x}: not a grid key of the sweeps; choose one of {', '.join(keys)}")
    # a list (e.g. model.betas) as its text: hashable to group by, and one point on x, not a row of numbers
    drawn = [*dict.fromkeys([x, *keys])]
    table[drawn] = table[drawn].map(lambda v: str(v) if isinstance(v, list) else v)
    # a key tied to x (data.seed,seed_everything=[0,1]) holds x's value in every trial: no line of its own
    groups = [key for key in keys if key != x and not (table[key] == table[x]).all()]
    unfinished = int((table["status"] != "done").sum())  # their summaries are a last validation's
    table = table[table["status"] == "done"].copy()
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    for values, rows in table.groupby(groups, dropna=False) if groups else [((), table)]:
        label = ", ".join(f"{k}={v}" for k, v in zip(groups, values if groups else (), strict=True))
        rows = rows.sort_values(x)
        ax.plot(rows[x], pd.to_numeric(rows[y], errors="coerce"), marker="o", label=label or None)
    unreached = int(pd.to_numeric(table[y], errors="coerce").isna().sum())
    notes = [f"{trials(unreached)} without a value"] * bool(unreached)
    notes += [f"{trials(unfinished)} not finished"] * bool(unfinished)
    note = f"\n({'; '.join(notes)}: not drawn)" if notes else ""
    ax.set(xlabel=x, ylabel=y)
    ax.set_title(f"{y}\nagainst {x}{note}", fontsize=9)
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def compare_command(argv: list[str]) -> None:
    parser = ToolParser(
        prog="grokkit compare",
        description="Draw runs' curves, or a summary field against a grid value, to a PNG and TensorBoard.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories or sweep directories")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--tags", nargs="+", default=list(CURVE_TAGS), help="scalar tags to draw over steps")
    parser.add_argument("--panels", action="store_true", help="one panel per run (default: one per tag)")
    parser.add_argument("--x", help="a grid key, e.g. data.phi (with --y: a summary figure)")
    parser.add_argument("--y", help="a load_sweep column, e.g. grokking.t_gen.test_inferred_iid.0.9")
    parser.add_argument("--logdir", type=Path, default=Path("runs/compare"), help="TensorBoard directory")
    args = parser.parse_args(argv)
    if (args.x is None) != (args.y is None):
        raise ConfigError("--x and --y go together: a summary field (--y) against a grid key (--x)")
    kind = figure_format(args.out, "--out")
    if args.x is not None:
        fig = summary_figure(args.dirs, args.x, args.y)
    else:
        fig = curves_figure(expand_runs(args.dirs), args.tags, args.panels)
    atomic_write(args.out, lambda f: fig.savefig(f, format=kind))
    with SummaryWriter(str(args.logdir)) as writer:
        writer.add_figure(f"compare/{args.out.stem}", fig)
    print(f"grokkit compare: {args.out}; TensorBoard: {args.logdir} (tag compare/{args.out.stem})")
