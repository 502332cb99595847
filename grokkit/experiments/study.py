"""``grokkit study``: He et al.'s five data regimes x seeds as one ``grokkit sweep``, then a table and a figure.

Every regime trains the same model on the same seeded graph (``data.seed`` is the trial's seed, whatever the
regime); only the regime's augmentation (``configs/study/<regime>.yaml``: the hop ratios and k) differs.
``--scale cpu`` stacks the regimes on ``configs/study/base_cpu.yaml``, ``--scale paper`` on He et al.'s
``configs/he2026/natural.yaml``. After the trials, ``STUDY/table.md`` and ``STUDY/table.csv`` put grokkit's
label next to the one He et al. report for the regime, and ``STUDY/study.png`` draws one panel per regime
(training accuracy, OOD accuracy, circuit signal over steps), the layout of the paper's pretraining figure.
``--report-only`` rebuilds those three files from the runs already in STUDY.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from grokkit.atomic import atomic_write
from grokkit.cli.configfiles import read_config_file
from grokkit.cli.parser import ToolParser
from grokkit.errors import ConfigError, TrainingError
from grokkit.experiments.trial import is_done
from grokkit.outputs import check_directory
from grokkit.results.compare import Line, panels_figure
from grokkit.results.runs import SWEEP_PLAN, TRIAL_MARKER, flatten, load_run, load_sweep

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BASES = {"cpu": CONFIGS / "study" / "base_cpu.yaml", "paper": CONFIGS / "he2026" / "natural.yaml"}
HE_LABELS = {  # the label He et al. report for each regime
    "natural": "real_grokking",
    "both_hop_full": "no_delay",
    "both_hop_half": "partial",
    "first_hop_full": "circuit_without_accuracy",
    "second_hop_full": "fake_grokking",
}
TRAIN, OOD, CIRCUIT = "val/train/acc", "val/test_inferred_ood/acc", "probe/logit_lens/ood/circuit_signal"
CURVES = {TRAIN: ("train acc", "tab:blue"), OOD: ("OOD acc", "tab:red"), CIRCUIT: ("circuit", "tab:green")}
SEED_STYLES = ("-", "--", ":", "-.")
STEP_COLUMNS = ("last_step", "t_mem", "ood_held_0.5", "ood_held_0.9")
TIMING = "study.json"  # the wall time of the last `grokkit study` that trained


def trial_name(regime: str, seed: int) -> str:
    return f"regime={regime},seed={seed}"


def check_study_trials(study_dir: Path, names: list[str]) -> None:
    """Refuse a sweep whose trials are not named as a study's (``regime=natural,seed=0``): its table has no
    regime or seed to read."""
    for name in names:
        if not re.fullmatch(r"regime=[^,]+,seed=-?[0-9]+", name):
            raise ConfigError(
                f"{study_dir}: its trial {name} is not a study's (regime=REGIME,seed=N); give a directory "
                "written by `grokkit study`"
            )


def regime_points(seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Every trial's config keys: the regime's overlay, and the seed for both the graph and the training."""
    points = {}
    for regime in HE_LABELS:
        overlay = flatten(read_config_file(CONFIGS / "study" / f"{regime}.yaml"))
        for seed in seeds:
            points[trial_name(regime, seed)] = {**overlay, "data.seed": seed, "seed_everything": seed}
    return points


def field(trial: pd.Series, key: str) -> Any:
    """A summary field of the trial, ``None`` where its run has not published it."""
    value = trial.get(key)
    return None if value is None or pd.isna(value) else value


def run_seconds(run_dir: Path) -> float | None:
    """Wall time of the trial's fit, from its ``trial.json`` (``None`` before it ended)."""
    try:
        return json.loads((run_dir / TRIAL_MARKER).read_text()).get("seconds")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def trial_row(trial: pd.Series, scalars: pd.DataFrame, run_dir: Path) -> dict[str, Any]:
    """One table row: onsets and the label from summary.json, accuracy and circuit statistics from the events."""
    regime, seed = (part.split("=", 1)[1] for part in trial["trial"].split(","))
    ood, circuit = (scalars[scalars["tag"] == tag]["value"] for tag in (OOD, CIRCUIT))
    rise = field(trial, "grokking.t_gen.test_inferred_ood.0.5")  # He et al.'s "rise": OOD held >= 0.5
    since_rise = (
        scalars[(scalars["tag"] == CIRCUIT) & (scalars["step"] >= rise)]["value"] if rise is not None else []
    )
    return {
        "regime": regime,
        "seed": int(seed),
        "status": trial["status"],
        "last_step": field(trial, "val.step"),
        "t_mem": field(trial, "grokking.t_mem"),
        "ood_acc_end": ood.iloc[-1] if len(ood) else None,
        "ood_acc_max": ood.max() if len(ood) else None,
        "ood_held_0.5": rise,
        "ood_held_0.9": field(trial, "grokking.t_gen.test_inferred_ood.0.9"),
        "circuit_max": circuit.max() if len(circuit) else None,
        "circuit_median_after_rise": statistics.median(since_rise) if len(since_rise) else None,
        "grokkit_label": field(trial, "classification.label"),
        "he_label": HE_LABELS.get(regime, ""),
        "minutes": None if (seconds := run_seconds(run_dir)) is None else round(seconds / 60, 1),
    }


def markdown(table: pd.DataFrame) -> str:
    """The table in Markdown: steps as integers, fractions to two places, a dash where there is no value."""

    def cell(column: str, value: Any) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return "-"
        if column in STEP_COLUMNS:
            return str(int(value))
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(column, row[column]) for column in table.columns) + " |")
    return "\n".join(lines) + "\n"


def study_figure(table: pd.DataFrame, names: list[str], scalars: dict[str, pd.DataFrame]) -> Figure:
    """One panel per regime, seeds overlaid (a line style each): training accuracy, OOD accuracy, circuit."""
    panels = {}
    for regime, rows in table.groupby("regime", sort=False):
        labels = ", ".join(str(label) for label in rows["grokkit_label"])
        title = f"{regime}\nHe et al.: {HE_LABELS.get(regime, '?')}\ngrokkit: {labels}"
        panels[title] = []
        for n, (index, seed) in enumerate(rows["seed"].items()):
            frame, style = scalars[names[index]], SEED_STYLES[n % len(SEED_STYLES)]
            panels[title] += [
                Line(
                    f"{label}, seed {seed}", frame[frame["tag"] == tag], {"color": color, "linestyle": style}
                )
                for tag, (label, color) in CURVES.items()
            ]
    return panels_figure(panels, accuracy_axis=True)


def report(study_dir: Path) -> pd.DataFrame:
    """Write ``table.md``, ``table.csv`` and ``study.png`` of the study in ``study_dir``; returns the table."""
    if not (study_dir / SWEEP_PLAN).is_file():
        raise ConfigError(f"{study_dir}: no {SWEEP_PLAN}; give a directory written by `grokkit study`")
    trials = load_sweep(study_dir)
    check_study_trials(study_dir, list(trials["trial"]))
    empty = pd.DataFrame({"step": [], "tag": [], "value": []})
    scalars = {
        name: load_run(study_dir / name).scalars if (study_dir / name).is_dir() else empty
        for name in trials["trial"]
    }
    table = pd.DataFrame(
        [
            trial_row(trial, scalars[trial["trial"]], study_dir / trial["trial"])
            for _, trial in trials.iterrows()
        ]
    )
    # a failed or unfinished run's label is that of its last validation: it agrees with nothing
    table["agrees"] = (table["status"] == "done") & (table["grokkit_label"] == table["he_label"])
    atomic_write(study_dir / "table.csv", lambda f: f.write(table.to_csv(index=False).encode()))
    atomic_write(study_dir / "table.md", lambda f: f.write(markdown(table).encode()))
    figure = study_figure(table, list(trials["trial"]), scalars)
    atomic_write(study_dir / "study.png", lambda f: figure.savefig(f, format="png"))
    return table


def parse_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The study's own options; the rest (``--config`` overlays, ``--max-concurrent``, ...) go to the sweep."""
    parser = ToolParser(
        prog="grokkit study",
        description="Train He et al.'s five data regimes x seeds as one `grokkit sweep`, then write "
        "STUDY/table.md, STUDY/table.csv and STUDY/study.png. Other flags (--config overlays on the base, "
        "--max-concurrent, --cpus-per-trial, --gpus-per-trial, --dry-run, --key=value) go to `grokkit sweep`.",
    )
    parser.add_argument("--scale", choices=sorted(BASES), default="cpu", help="the base config (default cpu)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="graph and training seeds")
    parser.add_argument("--out", type=Path, help="the study directory (default runs/study-SCALE)")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the table and figure from --out, train nothing"
    )
    options, rest = parser.parse_known_args(argv)
    if "--grid" in rest or any(arg.startswith("--grid=") for arg in rest):
        raise ConfigError("grokkit study takes no --grid: its trials are the regimes x --seeds")
    if len(set(options.seeds)) < len(options.seeds):
        raise ConfigError(
            f"--seeds {' '.join(map(str, options.seeds))}: a seed is given twice; give each once"
        )
    options.out = check_directory(options.out or Path("runs", f"study-{options.scale}"), "--out")
    return options, rest


def study_command(argv: list[str]) -> None:
    options, sweep_args = parse_options(argv)
    started, points = time.monotonic(), regime_points(options.seeds)
    trains = not options.report_only and any(not is_done(options.out / name) for name in points)
    if not options.report_only:
        from grokkit.experiments.sweep import sweep  # imported here: Ray is needed only to train

        args = ["--config", str(BASES[options.scale]), *sweep_args, "--out", str(options.out)]
        try:
            if sweep(args, trials=points) is None:  # --dry-run: the trials listed
                return
        except TrainingError:  # some trials failed: still the table and figure of the others, then the error
            report(options.out)
            raise
    table = report(options.out)
    agree = int(table["agrees"].sum())
    took = ""
    if trains:  # the wall time of this invocation, if it trained (trials finished earlier are skipped)
        minutes = round((time.monotonic() - started) / 60, 1)
        timing = {"minutes": minutes, "args": argv}
        atomic_write(options.out / TIMING, lambda f: f.write(json.dumps(timing, indent=1).encode()))
        took = f" in {minutes} min"
    print(
        f"grokkit study: {len(table)} runs{took}, {agree} with He et al.'s label -> "
        f"{options.out / 'table.md'}, table.csv, study.png"
    )
