"""Time to grok: steps and wall time of the newest default run, or of a fresh one (``--grok``), and the same
for the default with each grokking accelerator grokkit has (``--grok-accelerators`` trains them)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, short_path

from grokkit.cli import TRAINER_DEFAULTS

# The default config plus one accelerator: the command-line overrides, and the run name's suffix.
ACCELERATORS: dict[str, list[str]] = {
    "grokfast": ["--trainer.callbacks+=grokkit.train.grokfast.Grokfast"],  # alpha 0.98, lamb 2.0
    "stablemax": ["--model.loss=stablemax"],
}


def run_directory(raw: dict[str, Any], accelerator: str | None = None) -> Path:
    """``save_dir/name`` of the config's logger; ``name-<accelerator>`` for an accelerated run."""
    logger = (raw.get("trainer", {}) or {}).get("logger") or TRAINER_DEFAULTS["logger"]
    init = logger.get("init_args", {}) if isinstance(logger, dict) else {}
    name = init.get("name", "default") + (f"-{accelerator}" if accelerator else "")
    return ROOT / init.get("save_dir", "runs") / name


def fit_command(config: Path, directory: Path, accelerator: str | None) -> list[str]:
    """The ``grokkit fit`` that trains the run ``grok_result`` reads (README: "What `make fit` shows")."""
    command = [sys.executable, "-m", "grokkit", "fit", "--config", str(config)]
    if accelerator:
        command += [*ACCELERATORS[accelerator], f"--trainer.logger.init_args.name={directory.name}"]
    return command


def newest_summary(directory: Path) -> Path | None:
    versions = [p for p in directory.glob("version_*") if (p / "summary.json").exists()]
    versions.sort(key=lambda p: int(p.name.split("_")[-1]) if p.name.split("_")[-1].isdigit() else -1)
    return versions[-1] / "summary.json" if versions else None


def wall_clock_at(run: Path, steps: dict[str, int | None]) -> dict[str, float | None]:
    """Seconds from the run's first event to the validation logged at each step (TensorBoard wall times)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        start = events.FirstEventTimestamp()
        logged = {e.step: e.wall_time for e in events.Scalars("val/train/acc")}
    except Exception:  # no event file or no such tag: the steps are still reported
        return dict.fromkeys(steps)
    # Lightning logs a validation after step s at TensorBoard step s - 1; the board keys it by s.
    at = {step: logged.get(step, logged.get(step - 1)) for step in steps.values() if step is not None}
    return {key: None if at.get(step) is None else at[step] - start for key, step in steps.items()}


def grok_result(
    raw: dict[str, Any], config: Path, run_now: bool, accelerator: str | None = None
) -> dict[str, Any]:
    """Steps and wall time to ``t_mem`` and each ``t_gen`` of the newest run (trained first if ``run_now``)."""
    directory = run_directory(raw, accelerator)
    command = fit_command(config, directory, accelerator)
    if run_now:
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True)
        wall = time.perf_counter() - start
    summary_path = newest_summary(directory)
    if summary_path is None:
        how = "`make fit` or --grok" if accelerator is None else "--grok-accelerators"
        return {"source": f"no {short_path(str(directory))}/version_*/summary.json yet (run {how})"}
    summary = json.loads(summary_path.read_text())
    grokking = summary.get("grokking")
    source = short_path(str(summary_path)) + (" (run by this bench)" if run_now else " (newest existing run)")
    if not grokking:
        return {"source": f"{source}: no `grokking` section (no GrokkingOnset in that run)"}
    t_gen = grokking.get("t_gen", {}) or {}
    steps = {"t_mem": grokking.get("t_mem"), "end": summary.get("val", {}).get("step")}
    for split, short in (("test_inferred_iid", "iid"), ("test_inferred_ood", "ood")):
        for level in ("0.5", "0.9"):
            flat = grokking.get(f"t_gen/{split}/{level}")  # flat keys exist only once reached
            steps[f"t_gen_{short}_{level}"] = (t_gen.get(split) or {}).get(level, flat)
    result = {"source": source, "steps": steps, "wall_s": wall_clock_at(summary_path.parent, steps)}
    result["grokked"] = grokking.get("grokked")
    result["label"] = (summary.get("classification") or {}).get("label")
    result["command"] = " ".join(["grokkit", *(short_path(part) for part in command[3:])])
    if run_now:
        result["run_wall_s"] = wall
    return result


def study_result(directory: Path = ROOT / "runs" / "study-cpu") -> dict[str, Any]:
    """The CPU study's labels against He et al.'s and its wall time, from ``grokkit study``'s table."""
    table_path = directory / "table.csv"
    if not table_path.is_file():
        return {"source": f"no {short_path(str(table_path))} yet (run `make study`)"}
    import pandas as pd

    table = pd.read_csv(table_path)
    timing_path = directory / "study.json"
    minutes = json.loads(timing_path.read_text())["minutes"] if timing_path.is_file() else None
    return {
        "source": short_path(str(table_path)),
        "runs": len(table),
        "agree": int(table["agrees"].sum()),
        "labels": {f"{row.regime}/{row.seed}": row.grokkit_label for row in table.itertuples()},
        "trial_minutes": float(table["minutes"].sum()) if "minutes" in table else None,
        "study_minutes": minutes,
    }
