"""Callbacks that time grokkit's steps, validations and probes, and count host reads, inside a real fit."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from common import ROOT, short_path
from lightning.pytorch.callbacks import Callback

from grokkit.probes import Probe

PLUMBING = ("/torch/", "lightning_utilities/", "fabric/utilities/", "logger_connector/", "trainer/trainer.py")
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


class StepClock(Callback):
    """Times grokkit's steps in windows and runs ``between`` (the plain loop) after each one: A, B, A, B.

    A window's time runs from the end of ``between`` to the ``on_train_batch_end`` ``window`` steps later,
    so it holds whole steps: data fetch, transfer hook, forward, backward, optimizer, logging, callbacks.
    Validations (and the probes they run) inside a window are timed hook to hook and subtracted.
    """

    def __init__(self, warmup: int, window: int, windows: int, between: Callable[[], float]) -> None:
        self.warmup, self.window, self.windows, self.between = warmup, window, windows, between
        self.grokkit: list[float] = []  # seconds per step, one entry per window
        self.plain: list[float] = []
        self.validations: list[dict[str, float]] = []  # {"total": s, <probe>: s, ...} per validation
        self.started = 0.0
        self.excluded = 0.0

    # ----- training windows -----
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx
    ) -> None:
        now, step = time.perf_counter(), trainer.global_step
        if step < self.warmup or (step - self.warmup) % self.window:
            return
        if step > self.warmup:
            self.grokkit.append((now - self.started - self.excluded) / self.window)
        if len(self.plain) < self.windows:
            self.plain.append(self.between() / self.window)
        self.started, self.excluded = time.perf_counter(), 0.0

    # ----- validations and probes -----
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validations.append({"start": time.perf_counter()})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Registered last, so this runs after every probe's on_validation_end.
        record = self.validations[-1]
        record["total"] = time.perf_counter() - record.pop("start")
        self.excluded += record["total"]

    def time_probe(self, probe: Probe) -> None:
        """Wrap ``probe.run`` so each run's seconds land in the current validation's record."""
        run = probe.run

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                self.validations[-1][probe.name] = time.perf_counter() - start

        probe.run = timed  # type: ignore[method-assign]


@contextmanager
def counting_host_reads(counter: Counter[str]) -> Iterator[None]:
    """Count tensor -> Python reads (``.item()``, ``bool(t)``, ``float(t)``, ...) by their calling line.

    On a GPU each one is a host sync; on this CPU the count only shows where one would happen.
    """
    originals = {name: torch.Tensor.__dict__.get(name) for name in HOST_READS}

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counter[f"{name.strip('_')}() in {read_site(traceback.extract_stack()[:-1])}"] += 1
            return original(self, *args, **kwargs)

        return counted

    for name in HOST_READS:
        setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
    try:
        yield
    finally:
        for name, original in originals.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


def read_site(frames: list[traceback.FrameSummary]) -> str:
    """Who asked for a host read: the innermost grokkit frame, else the innermost frame that is not plumbing
    (torch, Lightning's metric conversion and logger connector)."""
    inner_first = list(reversed(frames))
    frame = next((f for f in inner_first if f.filename.startswith(f"{ROOT}/grokkit/")), None) or next(
        (f for f in inner_first if not any(part in f.filename for part in PLUMBING)), None
    )
    return "?" if frame is None else f"{frame.name} ({short_path(frame.filename)}:{frame.lineno})"


class HostReadWindow(Callback):
    """Counts host reads over whole training steps ``start`` -> ``stop``, outside any timed window (each read
    counted costs a stack walk)."""

    def __init__(self, start: int, steps: int) -> None:
        self.start, self.stop = start, start + steps
        self.counter: Counter[str] = Counter()
        self.context: Any = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.start and self.context is None:
            self.context = counting_host_reads(self.counter)
            self.context.__enter__()
        elif trainer.global_step == self.stop:
            self.close()

    def on_train_end(self, trainer, pl_module) -> None:
        self.close()  # a fit that stops early (a probe's stop, max_time) ends the window too

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.close()  # torch.Tensor's methods are restored even if the fit fails inside the window

    def close(self) -> None:
        if self.context is not None:
            self.context.__exit__(None, None, None)
            self.context = None
