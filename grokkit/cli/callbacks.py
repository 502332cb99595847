"""What every trainer gets besides the configured callbacks and plugins: grokkit's callbacks (the results
board first), atomic writes, and a per-step hook dispatch without Lightning's no-op costs."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary, RichProgressBar

from grokkit.cli.configfiles import as_list
from grokkit.cli.console import GrokProgressBar, OneLineSummary
from grokkit.errors import ConfigError
from grokkit.lightning_private import skip_inherited_batch_hooks
from grokkit.probes import Probe
from grokkit.train.board import ResultsBoard
from grokkit.train.checkpointing import AtomicCheckpointIO
from grokkit.train.dispatch import NoProfiler
from grokkit.train.heap import FrozenHeap
from grokkit.train.run_log import HparamsSession, ValidationAtProbeStep


def trainer_callbacks(configured: dict[str, Any], trainer_kwargs: dict[str, Any]) -> list:
    """A progress bar in steps, a one-line model summary, learning-rate and weight-decay curves, validation
    metrics at the probes' step, the HPARAMS session, unless configured otherwise, and the heap frozen through
    the fit (:class:`~grokkit.train.heap.FrozenHeap`); probes sorted by stage.
    Sets ``enable_model_summary`` in ``trainer_kwargs`` where the one-line summary replaces Lightning's."""
    callbacks = as_list(configured.get("callbacks"))
    refuse_twins(callbacks)
    wants_bar = configured.get("enable_progress_bar") is not False
    if wants_bar and not any(isinstance(c, RichProgressBar) for c in callbacks):
        callbacks.append(GrokProgressBar(refresh_rate=4))  # redraws per second at most (a redraw thread)
    if configured.get("enable_model_summary") is not False:  # Lightning's default: a table with FLOPs 0
        if not any(isinstance(c, ModelSummary) for c in callbacks):
            callbacks.append(OneLineSummary())
        trainer_kwargs["enable_model_summary"] = False  # no default summary, nor a line saying it was skipped
    logged = configured.get("logger") not in (False, [])  # unset: Lightning's default logger
    if logged and not any(isinstance(c, LearningRateMonitor) for c in callbacks):
        callbacks.append(LearningRateMonitor(logging_interval="step", log_weight_decay=True))
    callbacks.sort(key=lambda c: c.stage if isinstance(c, Probe) else 0)  # measurements before detectors
    board = [] if any(isinstance(c, ResultsBoard) for c in callbacks) else [ResultsBoard()]
    return [*board, *callbacks, ValidationAtProbeStep(), HparamsSession(), FrozenHeap()]  # board: val first


def refuse_twins(callbacks: list) -> None:
    """Two probes of one class would publish into one board section and one checkpoint state."""
    first: dict[str, int] = {}
    for index, callback in enumerate(callbacks):
        if isinstance(callback, Probe) and first.setdefault(callback.name, index) != index:
            twin = type(callback).__name__
            raise ConfigError(
                f"trainer.callbacks[{index}] is a second {twin}: two would write over each other's results "
                f"({callback.name} in summary.json, TensorBoard and checkpoints); keep one, and run another "
                f"setting of it with `grokkit analyze RUN --probes-config` (it replaces the run's {twin})",
                f"trainer.callbacks[{first[callback.name]}]",
                f"trainer.callbacks[{index}]",
            )


def trainer_profiler(configured: dict[str, Any], trainer_kwargs: dict[str, Any]) -> None:
    """Without a configured ``trainer.profiler``, Lightning's record-nothing profiler at no cost per hook
    (:class:`~grokkit.train.dispatch.NoProfiler`); a configured one (``simple``, ``advanced``, ...) is kept,
    and ``barebones`` (which refuses every profiler) gets none."""
    if configured.get("profiler") is None and not configured.get("barebones"):
        trainer_kwargs["profiler"] = NoProfiler()


def quiet_batch_hooks(trainer: L.Trainer) -> L.Trainer:
    """The built trainer, its callbacks (Lightning's own included) no longer called for inherited no-op batch
    hooks (:func:`~grokkit.lightning_private.skip_inherited_batch_hooks`)."""
    skip_inherited_batch_hooks(trainer.callbacks)
    return trainer


def trainer_plugins(configured: dict[str, Any]) -> list:
    """The configured plugins, and Lightning's checkpoint writer made atomic."""
    return [*as_list(configured.get("plugins")), AtomicCheckpointIO()]
