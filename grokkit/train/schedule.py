"""Schedules: log-spaced step sets, and hyperparameter switches triggered by a metric.

The switch makes the memorize-then-generalize recipe first-class config: e.g. train with weight decay 0.1
until training accuracy reaches 0.99, then raise it to 1.0 with 0.3x the learning rate and Adam's beta2 0.98
(``configs/default.yaml``).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from grokkit.errors import ConfigError
from grokkit.lightning_private import callback_state_key


def is_log_spaced(step: int, per_decade: int) -> bool:
    """True for the steps ``round(10 ** (k / per_decade))``, k = 0, 1, 2, ... (1, 2, 3, 6, 10, 18, ...)."""
    if step < 1:
        return False
    k = round(per_decade * math.log10(step))
    return round(10 ** (k / per_decade)) == step


def next_log_spaced(step: int, per_decade: int) -> int:
    """The first step after ``step`` that :func:`is_log_spaced` accepts."""
    k = math.floor(per_decade * math.log10(max(step, 1)))
    while round(10 ** (k / per_decade)) <= step:
        k += 1
    return round(10 ** (k / per_decade))


class SwitchHyperparameters(Callback):
    """Once ``monitor`` reaches ``threshold`` at a validation, change weight decay and/or learning rate.

    Args:
        monitor: A logged metric, read after each validation.
        threshold: The switch fires the first time ``monitor >= threshold``.
        weight_decay: New weight decay of the decayed parameter group (``None``: unchanged).
        lr_scale: Multiply the learning rate by this factor (``None``: unchanged).
        betas: New Adam betas (``None``: unchanged). A lower beta2 (0.98) lets Adam's second-moment estimate
            follow a gradient that grows again after the loss has become tiny, which is where its loss
            spikes ("slingshots") start.
    """

    def __init__(
        self,
        monitor: str = "val/train/acc",
        threshold: float = 0.99,
        weight_decay: float | None = None,
        lr_scale: float | None = None,
        betas: tuple[float, float] | None = None,
    ) -> None:
        self.monitor, self.threshold = monitor, threshold
        self.weight_decay, self.lr_scale, self.betas = weight_decay, lr_scale, betas
        self.fired_at_step: int | None = None

    @cached_property
    def state_key(self) -> str:
        return callback_state_key(self, monitor=self.monitor, threshold=self.threshold)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a validation of a fit only: Trainer.validate (transfer's look at its start) has no optimizer to change
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if not fitting or self.fired_at_step is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None and self.monitor.startswith("val/"):  # every validation logs them all: a typo
            logged = ", ".join(sorted(key for key in trainer.callback_metrics if key.startswith("val/")))
            raise ConfigError(
                f"SwitchHyperparameters.monitor={self.monitor!r} is not a logged metric; name one of {logged}"
            )
        if value is None or not float(value) >= self.threshold:  # NaN (a split with no items) fires nothing
            return
        self.fired_at_step = trainer.global_step
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                if self.weight_decay is not None and group.get("name") == "decay":
                    group["weight_decay"] = self.weight_decay
                if self.lr_scale is not None:
                    group["lr"] *= self.lr_scale
                if self.betas is not None:
                    group["betas"] = tuple(self.betas)
        if self.lr_scale is not None:
            for config in trainer.lr_scheduler_configs:
                config.scheduler.base_lrs = [lr * self.lr_scale for lr in config.scheduler.base_lrs]
        for logger in trainer.loggers:
            logger.log_metrics({"schedule/switch": 1.0}, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"fired_at_step": self.fired_at_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fired_at_step = state_dict["fired_at_step"]
