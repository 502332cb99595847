"""One trial of a sweep: a normal ``grokkit fit`` run, in a subprocess, into the trial's run directory.

The run directory is an ordinary grokkit run (``config.yaml``, TensorBoard events, ``checkpoints/``,
``summary.json``) plus ``fit.log`` (the fit's output) and ``trial.json``, written atomically once the fit has
ended: ``status`` ``done`` or ``failed``. A trial is finished only when ``trial.json`` says ``done``; an
unfinished one goes on as ``grokkit fit --ckpt_path last`` takes it (resumed, or from step 0 if it stopped
before its first ``last.ckpt``).
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

from grokkit.atomic import atomic_write
from grokkit.results.runs import TRIAL_MARKER, trial_status

LOG = "fit.log"


def is_done(run_dir: Path) -> bool:
    return trial_status(run_dir) == "done"


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

    @property
    def run_dir(self) -> Path:
        return self.sweep_dir / self.name

    def fit_args(self) -> list[str]:
        """A fit that started (it wrote its config.yaml) goes on as ``grokkit fit --ckpt_path last`` takes it:
        from its ``last.ckpt``, from step 0 if it stopped before its first one, refused if it got past one that
        is gone (nothing is deleted); else the trial starts from scratch."""
        if (self.run_dir / "config.yaml").is_file():
            return ["--config", str(self.run_dir / "config.yaml"), "--ckpt_path", "last"]
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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with open(self.run_dir / LOG, "a") as log:
            log.write(f"== grokkit sweep: {' '.join(command)}\n")
            log.flush()
            returncode = subprocess.run(command, cwd=self.cwd, env=env, stdout=log, stderr=log).returncode
        marker = {
            "trial": self.name,
            "point": self.point,
            "status": "done" if returncode == 0 else "failed",
            "returncode": returncode,
            "seconds": round(time.monotonic() - start, 1),
            "niceness": os.nice(0),  # the fit's scheduling priority (it inherits this worker's)
        }
        atomic_write(self.run_dir / TRIAL_MARKER, lambda f: f.write(json.dumps(marker, indent=1).encode()))
        if returncode != 0:
            raise RuntimeError(
                f"trial {self.name}: grokkit fit exited with {returncode}; see {self.run_dir / LOG}"
            )
        return marker


def run_trial(config: dict[str, Any], trials: dict[str, Trial]) -> dict[str, Any]:
    """Ray Tune's function trainable: ``config["trial"]`` names the grid point. It lives here, in a module that
    imports neither torch nor Ray, so that a Ray worker starts quickly."""
    return trials[config["trial"]].run()
