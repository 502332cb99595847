"""What a run prints: a progress bar in optimizer steps, a one-line model summary, and no noise lines.

Lightning's defaults print an epoch counter ("Epoch 0/-2" when training is bounded by ``max_steps``), a
module table with a FLOPs column that reads 0 (FLOPs are counted only with an ``example_input_array``), an
advertisement for a cloud logger, and a deprecation warning that Lightning itself triggers in torch; none
of them says anything about the run.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, RichProgressBar
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_summary import get_human_readable_count

PROGRESS_NAMES = {
    "train/loss": "loss",
    "val/train/acc": "train",
    "val/test_inferred_iid/acc": "iid",
    "val/test_inferred_ood/acc": "ood",
}


class GrokProgressBar(RichProgressBar):
    """``step 1200/16000`` with the few numbers that tell the grokking story, under short names.

    ``update_seconds``: the bar's step count and numbers follow training at most this often (0: every step).
    """

    def __init__(self, *args: Any, update_seconds: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.update_seconds = update_seconds
        self.shown: dict | None = None  # the numbers on the bar, and the logging interval they were read in
        self.shown_interval = -1
        self.next_update = 0.0  # time.monotonic() of the next update during training

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        # The numbers come from the trainer's callback metrics (device tensors) and are converted only when they
        # can have changed: at the first update after a logging step, and outside training (a validation is a
        # sync point anyway). Converting at every update, as Lightning does for `prog_bar` metrics, would make a
        # GPU wait for its queue to drain every few steps.
        interval = trainer.global_step // max(1, trainer.log_every_n_steps)
        if trainer.training and self.shown is not None and interval == self.shown_interval:
            return self.shown
        metrics = trainer.callback_metrics
        self.shown = {
            short: float(metrics[name]) for name, short in PROGRESS_NAMES.items() if name in metrics
        }
        self.shown_interval = interval
        return self.shown

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.show_steps(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # An update costs ~0.3 ms and the redraw it asks for ~1.7 ms of the GIL, which the redraw thread takes
        # from a training step: once a second is enough for a run of 10^4-10^6 steps.
        now = time.monotonic()
        if now < self.next_update and trainer.global_step != trainer.max_steps:
            return
        self.next_update = now + self.update_seconds
        # steps, not Lightning's batch count: up to the batch and back reads as progress (too high a rate)
        outputs, batch, batch_idx = args
        counted = trainer.global_step - 1 if trainer.max_steps > 0 else batch_idx
        super().on_train_batch_end(trainer, pl_module, outputs, batch, counted)
        self.show_steps(trainer)

    def show_steps(self, trainer: L.Trainer) -> None:
        """Count optimizer steps against ``max_steps`` (epochs mean nothing here: batches are drawn by step)."""
        if self.progress is None or self.train_progress_bar_id is None or trainer.max_steps < 1:
            return
        self.progress.update(
            self.train_progress_bar_id,
            description="step",
            completed=trainer.global_step,
            total=trainer.max_steps,
        )


class OneLineSummary(ModelSummary):
    """``model: net (Decoder, 27.3 K), ema (AveragedModel, 27.3 K); 27.3 K trainable, 0.1 MB``."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        **kwargs: Any,
    ) -> None:
        columns = dict(summary_data)
        rows = zip(columns["Name"], columns["Type"], columns["Params"], strict=True)
        parts = [f"{name} ({kind}, {count})" for name, kind, count in rows if count.strip() != "0"]
        trainable = get_human_readable_count(trainable_parameters)
        rank_zero_info(f"model: {', '.join(parts)}; {trainable} trainable parameters, {model_size:.1f} MB")


class LitLoggerTipFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


LIT_LOGGER_TIP_FILTER = LitLoggerTipFilter()  # one instance: adding it again is a no-op


def quiet_known_noise() -> None:
    """Silence the two lines every run printed that grokkit cannot act on, and nothing else."""
    # Lightning (2.6) asks every Trainer without its cloud logger to install one.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(LIT_LOGGER_TIP_FILTER)
    # Lightning's CombinedLoader uses torch's LeafSpec, which torch 2.13 deprecates; Lightning's to fix.
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
