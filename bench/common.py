"""What every part of the bench shares: where things are, how long to measure, one row of the table."""

from __future__ import annotations

import math
import os
import statistics
import time
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
    windows: int  # timed windows per arm of the step comparison
    windows_512: int  # timed rounds of the batch-512 arms and the matmul ceiling
    validations: int  # extra Trainer.validate passes that time validation and probes
    window_s: float  # seconds per window at batch 512 and for matmuls
    matmul_n: int  # square matmul size
    warmup_512: int  # untimed steps per batch-512 arm
    anchor_window: int  # steps per grokkit / anchor-loop window (batch 512, paper-scale graph)
    windows_anchor: int  # timed windows per arm of that comparison


FULL = Settings(
    warmup_steps=30,
    window_steps=None,
    windows=21,
    windows_512=11,
    validations=5,
    window_s=2.5,
    matmul_n=2048,
    warmup_512=3,
    anchor_window=4,
    windows_anchor=7,
)
QUICK = Settings(
    warmup_steps=5,
    window_steps=10,
    windows=2,
    windows_512=2,
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


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: the k-th smallest and the k-th largest value, for the
    largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is still ``confidence``; NaNs when even the
    extremes cover less (fewer than 6 values at 95 %). The machine's noise, not its mean, decides targets
    whose margin lies inside it."""
    ordered, n = sorted(values), len(values)
    below, rank = 0.0, 0  # below: P(Binomial(n, 1/2) < k)
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) / 2**n
        if 1 - 2 * below < confidence:
            break
        rank = k
    if rank == 0:
        return float("nan"), float("nan")
    return ordered[rank - 1], ordered[n - rank]


def interval_text(values: list[float], digits: int, suffix: str = "") -> str:
    """``95 % interval of the median a-b`` for a row's detail."""
    low, high = median_interval(values)
    if math.isnan(low):
        return f"too few values ({len(values)}) for a 95 % interval of the median"
    return f"95 % interval of the median {low:.{digits}f}{suffix}-{high:.{digits}f}{suffix}"


def one_line(error: Exception) -> str:
    """An error as one short line for a table cell and the JSON."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]


def short_path(filename: str) -> str:
    """``lightning/pytorch/...`` or ``grokkit/...`` instead of an absolute path."""
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def busy_cores(seconds: float = 2.0) -> float:
    """Cores that other processes kept busy over the next ``seconds`` (the bench itself sleeps meanwhile).

    Read from /proc/stat, so that a run that has just ended does not count, as it would in the one-minute load
    average; where /proc/stat is missing, the one-minute load average stands in.
    """

    def busy_and_total() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy_start, total_start = busy_and_total()
        time.sleep(seconds)
        busy_end, total_end = busy_and_total()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    share = (busy_end - busy_start) / max(1, total_end - total_start)
    return share * (os.cpu_count() or 1)
