"""Runs and sweeps as pandas tables, for notebooks and scripts.

    from grokkit.results import load_run, load_sweep
    scalars, summary = load_run("runs/default/version_0")   # step, tag, value, wall_time; summary.json
    table = load_sweep("runs/sweeps/phi_cpu")               # one row per trial: grid values, summary fields

Both tables export with pandas (``.to_csv(path, index=False)``); from a shell,
``python -m grokkit.results RUN_OR_SWEEP_DIR OUT.csv`` does the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from grokkit.errors import ConfigError

SWEEP_PLAN = "sweep.json"  # written by `grokkit sweep`
TRIAL_MARKER = "trial.json"  # written by each trial of a sweep once its fit has ended


class Run(NamedTuple):
    scalars: pd.DataFrame  # columns step, tag, value, wall_time; one row per (tag, step)
    summary: dict[str, Any]  # summary.json ({} before the first validation)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: ``{"grokking": {"t_mem": 800}}`` -> ``{"grokking.t_mem": 800}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def trial_status(run_dir: Path) -> str:
    """``done`` or ``failed`` as the trial's ``trial.json`` says once its fit ended, else ``unfinished``."""
    try:
        return json.loads((run_dir / TRIAL_MARKER).read_text())["status"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return "unfinished"


def check_run_dir(path: Path) -> Path:
    """Refuse a directory that holds no run (no TensorBoard events): its table would be empty."""
    if not any(path.glob("events.out.tfevents.*")):
        what = (
            "not a run or sweep directory (no TensorBoard events)"
            if path.is_dir()
            else "a file, not a directory"
            if path.exists()
            else "no such directory"
        )
        raise ConfigError(f"{path}: {what}; give a directory that grokkit fit or grokkit sweep wrote")
    return path


def load_run(run_dir: str | Path) -> Run:
    """The run's scalars, read from its TensorBoard events (a resumed run's repeated steps keep the later
    value), and its ``summary.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    rows = [
        (event.step, tag, event.value, event.wall_time)
        for tag in events.Tags()["scalars"]
        for event in events.Scalars(tag)
    ]
    scalars = pd.DataFrame(rows, columns=["step", "tag", "value", "wall_time"])
    scalars = scalars.drop_duplicates(["tag", "step"], keep="last").sort_values(
        ["tag", "step"], kind="stable"
    )
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return Run(scalars.reset_index(drop=True), summary)


def sweep_trials(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Every trial's point (name -> config key -> value), as ``SWEEP/sweep.json`` lists them."""
    path = sweep_dir / SWEEP_PLAN
    if not path.is_file():
        raise ConfigError(f"{path} not found: give a directory written by `grokkit sweep`")
    try:
        trials = json.loads(path.read_text())["trials"]
    except (json.JSONDecodeError, KeyError, TypeError):
        trials = None
    if not isinstance(trials, dict) or not all(isinstance(point, dict) for point in trials.values()):
        raise ConfigError(
            f"{path} is not the sweep.json `grokkit sweep` writes (no trials object); move it away, or give "
            "another directory"
        )
    return trials


def grid_keys(trials: dict[str, dict[str, Any]]) -> list[str]:
    """The config keys the trials' points set (a sweep's axes), in the order they first appear."""
    return list(dict.fromkeys(key for point in trials.values() for key in point))


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per trial of a ``grokkit sweep``: ``trial``, its grid values (one column per config key),
    ``status`` (done, failed, or unfinished) and every scalar field of its summary.json, flattened
    (``grokking.t_mem``, ``grokking.t_gen.test_inferred_iid.0.9``, ``classification.label``,
    ``val.test_inferred_iid/acc``, ...)."""
    sweep_dir = Path(sweep_dir)
    trials = sweep_trials(sweep_dir)
    # every grid column before status, also where a trial lacks its key
    keys = dict.fromkeys(grid_keys(trials))
    rows = []
    for name, point in trials.items():
        run_dir = sweep_dir / name
        summary_path = run_dir / "summary.json"
        summary = flatten(json.loads(summary_path.read_text())) if summary_path.is_file() else {}
        scalars = {
            key: v for key, v in summary.items() if v is None or isinstance(v, (bool, int, float, str))
        }
        rows.append({"trial": name, **keys, **point, "status": trial_status(run_dir), **scalars})
    return pd.DataFrame(rows)
