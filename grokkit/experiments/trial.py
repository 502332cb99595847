"""One trial of a sweep: a normal ``grokkit fit`` run, in a subprocess, into the trial's run directory.

The run directory is an ordinary grokkit run (``config.yaml``, TensorBoard events, ``checkpoints/``,
``summary.json``) plus ``fit.log`` (the fit's output) and ``trial.json``, written atomically once the fit has
ended: ``status`` ``done``, ``failed``, or ``unfinished`` (``trainer.max_time`` stopped it before
``trainer.max_steps``). A trial is finished only when ``trial.json`` says ``done``; an unfinished one goes on
as ``grokkit fit --ckpt_path last`` takes it (resumed, or from step 0 if it stopped before its first
``last.ckpt``), under the sweep's ``trainer.max_time``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from grokkit.atomic import atomic_write
from grokkit.results.runs import TRIAL_MARKER, trial_status

LOG = "fit.log"


def is_done(run_dir: Path) -> bool:
    return trial_status(run_dir) == "done"


def stopped_by_time(run_dir: Path) -> bool:
    """Whether ``trainer.max_time`` ended the run's fit before ``trainer.max_steps`` (Lightning ends that fit
    with exit code 0, as one that finished): its ``last.ckpt``'s step and Lightning's Timer state in it, against
    its ``config.yaml``. An early stop (``GrokkingOnset``) finishes a trial."""
    trainer = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    last = run_dir / "checkpoints" / "last.ckpt"
    if trainer.get("max_time") is None or trainer.get("max_steps", -1) == -1 or not last.is_file():
        return False  # without max_steps, max_time is the run's one bound: its end
    from lightning.pytorch.callbacks import Timer  # imported here: a Ray worker starts without torch

    from grokkit.train.checkpoint_file import read_checkpoint

    checkpoint, timer = read_checkpoint(last, str(last)), Timer(duration=trainer["max_time"])
    state = checkpoint.get("callbacks", {}).get(timer.state_key)
    if state is None or checkpoint["global_step"] >= trainer["max_steps"]:
        return False
    timer.load_state_dict(state)
    return timer.time_remaining() <= 0


def config_flags(point: dict[str, Any]) -> list[str]:
    """``--key value`` pairs for ``grokkit fit`` (values other than strings as JSON, which is YAML)."""
    return [
        arg
        for key, value in point.items()
        for arg in (f"--{key}", value if isinstance(value, str) else json.dumps(value))
    ]


@dataclass(frozen=True)
class Trial:
    """A grid point to fit: ``base`` config plus ``point``, logged to ``sweep_dir/name``."""

    name: str
    point: dict[str, Any]
    sweep_dir: Path
    base: Path
    threads: int
    cwd: str  # where the sweep was started: relative paths of the config resolve as for `grokkit fit`
    gpus: float = 0  # the GPUs Ray reserves for it: with none, none are visible to its fit

    @property
    def run_dir(self) -> Path:
        return self.sweep_dir / self.name

    def fit_args(self) -> list[str]:
        """A fit that started (it wrote its config.yaml) goes on as ``grokkit fit --ckpt_path last`` takes it:
        from its ``last.ckpt``, from step 0 if it stopped before its first one, refused if it got past one that
        is gone (nothing is deleted); else the trial starts from scratch."""
        if (self.run_dir / "config.yaml").is_file():  # under the sweep's max_time: a longer one resumes it
            max_time = self.point.get(
                "trainer.max_time", yaml.safe_load(self.base.read_text())["trainer"].get("max_time")
            )  # a grid over max_time: the trial's own
            config = ["--config", str(self.run_dir / "config.yaml")]
            return [*config, *config_flags({"trainer.max_time": max_time}), "--ckpt_path", "last"]
        shutil.rmtree(self.run_dir, ignore_errors=True)  # the log of a fit killed before it wrote its config
        name = ["--trainer.logger.init_args.name", self.name]
        return ["--config", str(self.base), *config_flags(self.point), *name]

    def run(self) -> dict[str, Any]:
        """Fit (unless finished earlier) and write ``trial.json``; raises if the fit failed."""
        if is_done(self.run_dir):
            return {"status": "done", "skipped": True}
        command = [sys.executable, "-m", "grokkit", "fit", *self.fit_args()]
        threads = str(self.threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        # Ray leaves a trial that reserved no GPU every GPU of its node, shared with the others
        if not self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with open(self.run_dir / LOG, "a") as log:
            log.write(f"== grokkit sweep: {' '.join(command)}\n")
            log.flush()
            returncode = subprocess.run(command, cwd=self.cwd, env=env, stdout=log, stderr=log).returncode
        marker = {
            "trial": self.name,
            "point": self.point,
            "status": "failed" if returncode else "unfinished" if stopped_by_time(self.run_dir) else "done",
            "returncode": returncode,
            "seconds": round(time.monotonic() - start, 1),
            "niceness": os.nice(0),  # the fit's scheduling priority (it inherits this worker's)
            "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),  # Ray's choice for a trial with GPUs
        }
        atomic_write(self.run_dir / TRIAL_MARKER, lambda f: f.write(json.dumps(marker, indent=1).encode()))
        if returncode != 0:
            raise RuntimeError(
                f"trial {self.name}: grokkit fit exited with {returncode}; see {self.run_dir / LOG}"
            )
        return marker


ADVICE = {  # what finishes a trial that is not done, by how its fit ended
    "max_time": "trainer.max_time stopped them; give a longer --trainer.max_time to resume them",
    "input": "their config was refused (exit code 2); fix it: resuming cannot help",
    "other": "run the same command again to resume them",
}


def how_it_ended(run_dir: Path) -> str:
    """A key of :data:`ADVICE` for a trial that is not done."""
    try:
        marker = json.loads((run_dir / TRIAL_MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return "other"  # killed before its fit ended
    if marker.get("status") == "unfinished":
        return "max_time"
    return "input" if marker.get("returncode") == 2 else "other"


def not_finished(trials: list[Trial], total: int) -> str:
    """One line on the trials that did not finish, grouped by what finishes them."""
    groups: dict[str, list[str]] = {}
    for trial in trials:
        groups.setdefault(how_it_ended(trial.run_dir), []).append(trial.name)
    parts = [
        f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}: {ADVICE[how]}"
        for how, names in groups.items()
    ]
    return f"{len(trials)} of {total} trials did not finish (see RUN/fit.log): {'; '.join(parts)}"


def run_trial(config: dict[str, Any], trials: dict[str, Trial]) -> dict[str, Any]:
    """Ray Tune's function trainable: ``config["trial"]`` names the grid point. It lives here, in a module that
    imports neither torch nor Ray, so that a Ray worker starts quickly."""
    return trials[config["trial"]].run()
