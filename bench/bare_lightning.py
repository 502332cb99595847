"""Lightning's default training loop with nothing of grokkit in it: where a Lightning trainer's step cost starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from common import Settings
from grokkit_arm import timed_fit
from plain_loop import grokkit_optimizer

from grokkit.train.losses import item_losses


class MinimalModule(L.LightningModule):
    """The plain loop's network, loss and optimizer under Lightning's automatic optimization: no metrics,
    logging, schedule, non-finite check or callbacks."""

    def __init__(self, net: torch.nn.Module, module_hparams: dict) -> None:
        super().__init__()
        self.net, self.module_hparams = net, module_hparams

    def training_step(self, items: torch.Tensor, batch_idx: int) -> torch.Tensor:
        hp = self.module_hparams
        inputs, targets, positions = self.net.training_io(items, hp["train_logits"] == "all")
        logits = self.net(inputs, positions=positions)
        return item_losses(logits, targets, hp["loss"], hp["label_smoothing"], positions is not None).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return grokkit_optimizer(self.net, self.module_hparams)


def measure_lightning_default(
    settings: Settings, config: Path, tmp: Path, threads: int, window: int, network: list[str]
) -> dict[str, Any]:
    """A bare ``Trainer`` (no logger, checkpoints, progress bar or summary) fitting :class:`MinimalModule` on
    grokkit's data and the config's network with the ``network`` overrides, against the plain loop: what
    Lightning itself adds to a step."""
    cli, clock = timed_fit(settings, config, tmp, threads, window, "bench-bare", network)
    trainer = L.Trainer(
        accelerator="cpu",  # beside the plain loop, as grokkit's fit is (grokkit_arm.ON_CPU)
        max_steps=cli.trainer.max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[clock],
    )
    trainer.fit(MinimalModule(cli.model.net, dict(cli.model.hparams)), datamodule=cli.datamodule)
    return {"grokkit_s": clock.grokkit, "plain_s": clock.plain, "overrides": network}
