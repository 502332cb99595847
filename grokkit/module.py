"""The training system: loss, optimizer groups, schedule, EMA and per-split exact-match metrics.

The network itself is a plain :class:`~grokkit.models.TwoHopModel` built from ``network(vocab_size,
item_len)``; this module only decides how it is trained and evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric

from grokkit.data.kg import EVAL_SPLITS
from grokkit.models import IGNORE, TwoHopModel
from grokkit.probes.board import ResultsBoard

TRAIN_DISTRIBUTION = ("id_atomic", "ood_atomic", "train_inferred")  # averaged into val/train/acc


def item_loss_and_correct(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: mean cross-entropy over supervised tokens, and exact match of all of them (argmax)."""
    supervised = targets != IGNORE
    token_loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    loss = token_loss.sum(1) / supervised.sum(1).clamp(min=1)
    correct = ((logits.argmax(-1) == targets) | ~supervised).all(1)
    return loss, correct


class GrokModule(L.LightningModule):
    """Trains a two-hop model; evaluation uses the EMA weights when ``ema_decay`` is set.

    Args:
        network: The model class and its hyperparameters (``class_path`` + ``init_args``).
        vocab_size: Linked from ``data.vocab_size``.
        item_len: Linked from ``data.item_len``.
        lr: Peak learning rate (after warm-up, constant).
        betas: AdamW betas ([W]: 0.9, 0.999; [H]: 0.9, 0.95).
        weight_decay: AdamW decoupled weight decay.
        decay: ``matrices`` decays only parameters with 2+ dims (GPT-2 convention), ``all`` decays all ([H]).
        warmup_steps: Linear warm-up from 0 to ``lr``.
        ema_decay: Keep an exponential moving average of the weights (e.g. 0.999) and evaluate with it.
        compile: Run the training forward through ``torch.compile`` (evaluation and probes stay eager, so
            patched and state-returning forwards never recompile). Pays a one-off compile (tens of seconds
            on CPU) for faster steps; needs a working C++ compiler for the inductor backend.
    """

    def __init__(
        self,
        network: Callable[[int, int], TwoHopModel],
        vocab_size: int = 0,
        item_len: int = 5,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.1,
        decay: Literal["matrices", "all"] = "matrices",
        warmup_steps: int = 0,
        ema_decay: float | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = network(vocab_size, item_len)
        self.ema = (
            AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            if ema_decay
            else None
        )
        self.val_acc = nn.ModuleDict({split: MeanMetric() for split in EVAL_SPLITS})
        self.val_loss = nn.ModuleDict({split: MeanMetric() for split in EVAL_SPLITS})
        self.board = ResultsBoard()
        self._compiled: Callable[..., torch.Tensor] | None = None  # built on first use, never a submodule

    def setup(self, stage: str) -> None:
        if self.trainer.log_dir is not None:
            self.board.path = Path(self.trainer.log_dir) / "summary.json"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["results_board"] = self.board.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "results_board" in checkpoint:
            self.board.load_state_dict(checkpoint["results_board"])

    @property
    def eval_net(self) -> TwoHopModel:
        """The weights evaluation and probes should read: the EMA copy if there is one."""
        return self.ema.module if self.ema is not None else self.net

    def configure_optimizers(self):
        decayed = [p for p in self.net.parameters() if p.dim() >= 2 or self.hparams.decay == "all"]
        undecayed = [p for p in self.net.parameters() if not (p.dim() >= 2 or self.hparams.decay == "all")]
        groups = [
            {"params": decayed, "weight_decay": self.hparams.weight_decay, "name": "decay"},
            {"params": undecayed, "weight_decay": 0.0, "name": "no_decay"},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, betas=self.hparams.betas, fused=True)
        warmup = max(1, self.hparams.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @property
    def train_net(self) -> Callable[..., torch.Tensor]:
        """The training forward: ``self.net``, or its compiled wrapper with ``compile=True`` (same weights)."""
        if not self.hparams.compile:
            return self.net
        if self._compiled is None:
            # A plain attribute, not a registered module: the state dict keeps only ``net.*`` keys.
            self.__dict__["_compiled"] = torch.compile(self.net)
        return self._compiled

    def training_step(self, items: torch.Tensor, batch_idx: int) -> torch.Tensor:
        inputs, targets = self.net.inputs_and_targets(items)
        loss, correct = item_loss_and_correct(self.train_net(inputs), targets)
        loss = loss.mean()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/batch_acc", correct.float().mean())
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):  # the grokking picture: every split on one chart
                logger.experiment.add_custom_scalars(
                    {
                        "grokking": {
                            "accuracy": ["Multiline", [r"val/.*/acc"]],
                            "loss": ["Multiline", [r"val/.*/loss"]],
                        }
                    }
                )

    # ----- evaluation: one batched forward per chunk, argmax, no generation loop -----
    def validation_step(self, items: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        split = EVAL_SPLITS[dataloader_idx]
        inputs, targets = self.eval_net.inputs_and_targets(items)
        loss, correct = item_loss_and_correct(self.eval_net(inputs), targets)
        self.val_acc[split].update(correct.float())
        self.val_loss[split].update(loss)

    test_step = validation_step

    def _log_split_metrics(self, stage: str) -> None:
        accuracy = {split: self.val_acc[split].compute() for split in EVAL_SPLITS}
        for split in EVAL_SPLITS:
            self.log(f"{stage}/{split}/acc", accuracy[split], prog_bar=split.startswith("test"))
            self.log(f"{stage}/{split}/loss", self.val_loss[split].compute())
            self.val_acc[split].reset()
            self.val_loss[split].reset()
        train_accuracy = torch.stack([accuracy[split] for split in TRAIN_DISTRIBUTION]).mean()
        self.log(f"{stage}/train/acc", train_accuracy, prog_bar=True)
        if stage == "val":  # what detectors read: the accuracies of this validation
            results = {f"{split}/acc": float(value) for split, value in accuracy.items()}
            self.board.publish("val", self.trainer.global_step, {"train/acc": float(train_accuracy), **results})

    def on_validation_epoch_end(self) -> None:
        self._log_split_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_split_metrics("test")
