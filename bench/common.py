"""What every part of the bench shares: where things are, how long to measure, one row of the table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"


@dataclass
class Settings:
    """How long to measure: ``--quick`` shrinks everything to check that the script runs."""

    warmup_steps: int  # grokkit and plain-loop steps before the first timed window
    window_steps: int | None  # steps per grokkit / plain window; None: the config's log_every_n_steps,
    # so that every window holds exactly one logging event
    windows: int  # timed windows per arm
    validations: int  # extra Trainer.validate passes that time validation and probes
    window_s: float  # seconds per window at batch 512 and for matmuls
    matmul_n: int  # square matmul size
    warmup_512: int  # untimed steps per batch-512 arm
    anchor_window: int  # steps per grokkit / anchor-loop window (batch 512, paper-scale graph)
    windows_anchor: int  # timed windows per arm of that comparison


FULL = Settings(
    warmup_steps=30,
    window_steps=None,
    windows=9,
    validations=5,
    window_s=2.5,
    matmul_n=2048,
    warmup_512=3,
    anchor_window=4,
    windows_anchor=3,
)
QUICK = Settings(
    warmup_steps=5,
    window_steps=10,
    windows=2,
    validations=1,
    window_s=0.3,
    matmul_n=1024,
    warmup_512=1,
    anchor_window=1,
    windows_anchor=1,
)


@dataclass
class Row:
    """One line of the table: a measured value, its target (if any) and where it comes from."""

    name: str
    value: float | None
    shown: str
    target: str = ""
    passed: bool | None = None  # None: no target (information only) or not measured
    detail: str = ""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def short_path(filename: str) -> str:
    """``lightning/pytorch/...`` or ``grokkit/...`` instead of an absolute path."""
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename
