"""Where probes publish: the latest result of every probe, its history, and ``summary.json``.

The board is a callback of its own, so probes work with any LightningModule: they find it through the
trainer (:meth:`ResultsBoard.of`), never through the module. Probes never call each other; a detector reads
what others published here. After every validation the board publishes the module's logged accuracies
(``val/<split>/acc``) as section ``val``, before any probe runs; it travels in checkpoints and rewrites
``summary.json`` atomically on every publish.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from grokkit.atomic import atomic_write
from grokkit.errors import ConfigError, StorageError

CHECKPOINT_KEY = (
    "results_board"  # the checkpoint entry holding the board (read by reports, without Lightning)
)


def strict_json(value: Any) -> Any:
    """``value`` as JSON can hold it: a number JSON lacks (NaN, the accuracy of an empty split; infinity)
    becomes ``null``, tensors and numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


class ResultsBoard(Callback):
    """``sections[name]`` holds a probe's latest result; ``history[name]`` its scalar results by step."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self.path: Path | None = None

    @staticmethod
    def of(trainer: L.Trainer) -> ResultsBoard:
        """The trainer's board; grokkit's CLI always adds one, a hand-built Trainer needs it in its callbacks."""
        for callback in trainer.callbacks:
            if isinstance(callback, ResultsBoard):
                return callback
        raise ConfigError(
            "no results board among trainer.callbacks: add grokkit.train.board.ResultsBoard() before the probes"
        )

    # ----- publishing and reading -----
    def publish(self, name: str, step: int, result: dict[str, Any]) -> None:
        self.sections[name] = {"step": step, **result}
        scalars = {
            k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        history = self.history.setdefault(name, [])
        if history and history[-1][0] == step:
            history[-1] = (step, scalars)
        else:
            history.append((step, scalars))
        self.write()

    def latest(self, name: str) -> dict[str, Any] | None:
        return self.sections.get(name)

    def series(self, name: str, key: str) -> list[tuple[int, float]]:
        """(step, value) pairs of one scalar of one probe, in publishing order."""
        return [(step, values[key]) for step, values in self.history.get(name, []) if key in values]

    def summary(self) -> dict[str, Any]:
        return dict(self.sections)

    def write(self) -> None:
        """Atomic rewrite of summary.json: readers, and a run resumed after a crash, see old or new, never half."""
        if self.path is None:
            return
        text = json.dumps(strict_json(self.summary()), indent=1, allow_nan=False)
        try:
            atomic_write(self.path, lambda f: f.write(text.encode()))
        except OSError as error:  # a full disk: stop in one line, the previous summary.json is intact
            raise StorageError(
                f"cannot write {self.path} ({error.strerror or error}); the previous one is intact; free disk "
                "space, then resume with --ckpt_path last"
            ) from error

    # ----- Lightning hooks -----
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.log_dir is not None:
            self.path = Path(trainer.log_dir) / "summary.json"
        # a warning, as a smoke or timing run may mean it; val_check_interval counts batches, max_steps updates
        every, steps = trainer.val_check_interval, trainer.max_steps
        if stage == "fit" and isinstance(every, int) and 0 < steps * trainer.accumulate_grad_batches < every:
            rank_zero_warn(
                f"trainer.max_steps={steps} ends the run before its first validation (trainer.val_check_interval"
                f"={every}): no accuracy curves, summary.json or probe results; lower val_check_interval for them"
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Section ``val``: this validation's accuracies, as the module logged them (``val/<split>/acc``)."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        accuracies = {
            key.removeprefix("val/"): float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/") and key.endswith("/acc")
        }
        accuracies = dict(sorted(accuracies.items(), key=lambda item: item[0] != "train/acc"))  # train first
        if accuracies:
            self.publish("val", trainer.global_step, accuracies)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {"sections": self.sections, "history": self.history}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Only a fit continues the board; ``grokkit validate|test`` score one checkpoint, with the probes."""
        if trainer.state.fn == TrainerFn.FITTING:
            self.restore(checkpoint)

    def restore(self, checkpoint: dict[str, Any]) -> ResultsBoard:
        """The board as a checkpoint saved it (a checkpoint without one leaves it as it is)."""
        if CHECKPOINT_KEY in checkpoint:
            self.sections = checkpoint[CHECKPOINT_KEY]["sections"]
            self.history = checkpoint[CHECKPOINT_KEY]["history"]
        return self
