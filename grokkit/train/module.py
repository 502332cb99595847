"""The training system: loss, optimizer groups, schedule, EMA and per-split exact-match metrics.

The network itself is a plain :class:`~grokkit.models.TwoHopModel` built from ``network(vocab_size,
item_len)``; this module only decides how it is trained and evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torchmetrics import MeanMetric

from grokkit.data.splits import EVAL_SPLITS
from grokkit.models import TwoHopModel
from grokkit.torch_private import mask_next_update, mask_scaled_step
from grokkit.train.checkpointing import rng_states, set_rng_states
from grokkit.train.compiling import CompileSetting, TrainingForward, refuse_accumulation
from grokkit.train.dispatch import PlainAttributes
from grokkit.train.ema import update_ema
from grokkit.train.losses import LossName, item_losses, items_correct
from grokkit.train.nonfinite import NonFiniteWatch
from grokkit.train.optim import DecayName, clip_gradients, fused_adamw, retune, unscaling_closure
from grokkit.train.scaler import loss_scaler
from grokkit.train.warm_start import load_initial_weights

TRAIN_DISTRIBUTION = ("id_atomic", "ood_atomic", "train_inferred")  # averaged into val/train/acc
CHARTS = {"grokking": {"accuracy": ["Multiline", [r"val/.*/acc"]], "loss": ["Multiline", [r"val/.*/loss"]]}}


class GrokModule(PlainAttributes, L.LightningModule):
    """Trains a two-hop model; evaluation uses the EMA weights when ``ema_decay`` is set.

    Args:
        network: The model class and its hyperparameters (``class_path`` + ``init_args``).
        vocab_size: Linked from ``data.vocab_size``.
        item_len: Linked from ``data.item_len``.
        lr: Peak learning rate (after warm-up, constant).
        betas: AdamW betas ([W]: 0.9, 0.999; [H]: 0.9, 0.95).
        eps: AdamW epsilon; a larger value (1e-6) damps the updates of parameters whose gradients are tiny.
        weight_decay: AdamW decoupled weight decay.
        decay: ``matrices`` decays only parameters with 2+ dims (GPT-2 convention), ``all`` decays all ([H]),
            ``blocks`` the matrices except the ``nn.Embedding`` tables (minGPT; ``docs/demo_search.md`` tried it).
        warmup_steps: Linear warm-up from 0 to ``lr``.
        ema_decay: Keep an exponential moving average of the weights (e.g. 0.999) and evaluate with it.
        compile: Run the training forward through ``torch.compile``: ``auto`` on a CUDA device only (if the
            compile fails there, a warning, then eager training), ``true`` on any device, ``reduce-overhead``
            as ``true`` in that mode (CUDA graphs; no gradient accumulation), ``false`` never. Evaluation and
            probes stay eager (:mod:`grokkit.train.compiling`).
        loss: ``cross_entropy`` (softmax) or ``stablemax`` (Prieto et al. 2025; see :mod:`grokkit.train.losses`),
            for training and for the validation losses alike.
        train_logits: Where a training step computes logits: ``loss_positions``, only at the positions the
            loss reads when the model names them (the decoder's answer and ``</a>``), or ``all``, every position
            (``configs/default.yaml``'s, as its documented runs; the same loss up to float rounding).
        label_smoothing: Training targets mix the one-hot answer with this weight of the uniform distribution
            (validation losses stay unsmoothed): a fitted model is not driven to ever larger logits.
        nonfinite: What a NaN or infinite loss or gradient does: ``stop`` the run with an error naming the step
            (the weights stay those before it; ``last.ckpt`` stays the last good state), or ``skip`` the update
            (counted in ``train/skipped_steps``). Checked on the device (:mod:`grokkit.train.nonfinite`).
        nonfinite_check_every: Steps between the host's reads of that check (a ``stop`` stops there, naming the
            first bad step); it is also read before every validation and checkpoint. ``None``: every step on a
            CPU (where the read is free) and every ``trainer.log_every_n_steps`` steps on an accelerator.
        init_from: Start from the network weights (the EMA copy if any) of another run's checkpoint.
    """

    def __init__(
        self,
        network: Callable[[int, int], TwoHopModel],
        vocab_size: int = 0,
        item_len: int = 5,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        decay: DecayName = "matrices",
        warmup_steps: int = 0,
        ema_decay: float | None = None,
        compile: CompileSetting = "auto",
        loss: LossName = "cross_entropy",
        train_logits: Literal["loss_positions", "all"] = "loss_positions",
        label_smoothing: float = 0.0,
        nonfinite: Literal["stop", "skip"] = "stop",
        nonfinite_check_every: int | None = None,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = network(vocab_size, item_len)
        if init_from is not None:
            load_initial_weights(self.net, init_from, vocab_size)
        self.ema = AveragedModel(self.net, use_buffers=True) if ema_decay else None  # updated by update_ema
        self.eval_splits: tuple[str, ...] = EVAL_SPLITS  # the data module's, from setup on
        self.val_acc = nn.ModuleDict({split: MeanMetric() for split in EVAL_SPLITS})
        self.val_loss = nn.ModuleDict({split: MeanMetric() for split in EVAL_SPLITS})
        self.train_forward = TrainingForward(self.net, compile)
        self.nonfinite_watch = NonFiniteWatch(nonfinite, nonfinite_check_every)
        self._step_loss: torch.Tensor | None = None  # this step's loss, checked before the optimizer step
        self._resumed: tuple[dict | None, dict] | None = None  # a checkpoint's generators and hparams
        self._scaled_mask: torch.Tensor | None = None  # 16-mixed: the mask the last step saw

    def setup(self, stage: str) -> None:
        self.eval_splits = tuple(getattr(self.trainer.datamodule, "eval_splits", EVAL_SPLITS))
        for split in self.eval_splits:  # e.g. the transfer experiment's new-fact categories
            if split not in self.val_acc:
                self.val_acc[split], self.val_loss[split] = MeanMetric(), MeanMetric()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = rng_states()  # Lightning does not save them; dropout draws from them
        self.nonfinite_watch.raise_if_bad(self.trainer)  # never save a state after a non-finite step
        checkpoint["grokkit"] = {"skipped_steps": int(self.nonfinite_watch.skipped_total())}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_watch.reset(skipped_before=checkpoint.get("grokkit", {}).get("skipped_steps", 0))
        self._resumed = (checkpoint.get("rng_states"), checkpoint.get("hyper_parameters", {}))

    def on_train_start(self) -> None:
        """A resumed fit: the generators set after the data loaders drew from them, as in an unbroken run; the
        optimizer, which Lightning restored, given the lr, weight decay, betas and eps configured now."""
        if self._resumed is not None:
            rng, trained = self._resumed
            if rng is not None:
                set_rng_states(rng)
            retune(self.trainer, trained, self.hparams)
            self._resumed = None

    @property
    def eval_net(self) -> TwoHopModel:
        """The weights evaluation and probes should read: the EMA copy if there is one."""
        return self.ema.module if self.ema is not None else self.net

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = fused_adamw(self.net, hp.lr, hp.betas, hp.eps, hp.weight_decay, hp.decay)
        warmup = max(1, self.hparams.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        optimizer.register_step_pre_hook(self._mask_scaled_step)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def training_step(self, items: torch.Tensor, batch_idx: int) -> torch.Tensor:
        inputs, targets, positions = self.net.training_io(items, self.hparams.train_logits == "all")
        logits = self.train_forward(inputs, positions)
        flat = positions is not None  # the narrowed logits take the fast loss layout (see train_logits)
        loss = item_losses(logits, targets, self.hparams.loss, self.hparams.label_smoothing, flat).mean()
        self._step_loss = loss.detach()
        if self.is_logging_step:  # self.log costs ~0.5 ms and a host sync: only on steps reaching the logger
            # not prog_bar: Lightning would convert it to a number after every later step (a host sync each);
            # grokkit's progress bar reads it from the callback metrics once per logging step
            self.log("train/loss", loss)
            self.log("train/batch_acc", items_correct(logits, targets).float().mean())
        return loss

    @property
    def is_logging_step(self) -> bool:
        """The steps whose training metrics Lightning passes to the loggers (every ``log_every_n_steps``)."""
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0

    @cached_property
    def trained_parameters(self) -> list[nn.Parameter]:
        """The network's parameters, listed once: walking the module tree every step costs ~0.15 ms."""
        return list(self.net.parameters())

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Check the loss and gradients (before clipping) on the device; mask the update of a bad step. Under
        ``16-mixed`` the gradient scaler owns gradient overflows (it skips those steps and lowers its scale), so
        only the loss is checked, and its mask joins the scaler's inside the step (:meth:`_mask_scaled_step`)."""
        scaler = loss_scaler(self.trainer)
        loss = self._step_loss if self._step_loss is not None else torch.zeros((), device=self.device)
        step, watch = self.trainer.global_step, self.nonfinite_watch
        watch.observe(step, loss, None if scaler is not None else self.trained_parameters)
        read = watch.read_due(step, self.device, self.trainer.log_every_n_steps)
        if read:
            watch.raise_if_bad(self.trainer)
        if scaler is None:  # a step read as good here needs no mask (~40 us of fused AdamW's on a CPU)
            mask_next_update(optimizer, None if read and watch.mode == "stop" else watch.mask)
        if self.hparams.nonfinite == "skip" and self.is_logging_step:
            self.log("train/skipped_steps", watch.skipped_total().float())

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)  # mixed precision too

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: torch.optim.Optimizer,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        """The optimizer step, then the EMA update: both before any callback of this batch can checkpoint."""
        closure = unscaling_closure(optimizer_closure, self.trainer, optimizer)  # true gradients for hooks
        self._scaled_mask = None
        super().optimizer_step(epoch, batch_idx, optimizer, closure)
        masked = self.nonfinite_watch.mask if loss_scaler(self.trainer) is None else self._scaled_mask
        if self.ema is not None and masked is not None:  # frozen on a masked or skipped step
            update_ema(self.ema, self.net, self.hparams.ema_decay, keep=1.0 - masked)

    def _mask_scaled_step(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        """A step pre-hook: under ``16-mixed`` the scaler has just given the fused step its ``found_inf`` (its
        overflow check); the watch's mask joins it, so no step waits for the host (and the EMA reads it)."""
        if loss_scaler(self.trainer) is not None:
            self._scaled_mask = mask_scaled_step(optimizer, self.nonfinite_watch.mask)

    def on_validation_start(self) -> None:
        self.nonfinite_watch.raise_if_bad(self.trainer)

    on_train_end = on_validation_start  # neither a validation nor the end of a fit passes an unread bad step

    def on_fit_start(self) -> None:
        refuse_accumulation(self.hparams.compile, self.trainer.accumulate_grad_batches)
        self.nonfinite_watch.reset()  # after a checkpoint's restore, which set the skips before it
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):  # the grokking picture: every split on one chart
                logger.experiment.add_custom_scalars(CHARTS)

    # ----- evaluation: one batched forward per chunk, argmax, no generation loop -----
    def validation_step(self, items: torch.Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.eval_splits[dataloader_idx]
        inputs, targets = self.eval_net.inputs_and_targets(items)
        logits = self.eval_net(inputs)
        self.val_acc[split].update(items_correct(logits, targets).float())
        self.val_loss[split].update(item_losses(logits, targets, self.hparams.loss))

    test_step = validation_step

    def _log_split_metrics(self, stage: str) -> None:
        accuracy = {split: self.val_acc[split].compute() for split in self.eval_splits}
        for split in self.eval_splits:
            self.log(f"{stage}/{split}/acc", accuracy[split], prog_bar=split.startswith("test"))
            self.log(f"{stage}/{split}/loss", self.val_loss[split].compute())
            self.val_acc[split].reset()
            self.val_loss[split].reset()
        # nanmean: a split without items (no training compositions at phi 0) has no accuracy
        train_accuracy = torch.stack([accuracy[split] for split in TRAIN_DISTRIBUTION]).nanmean()
        self.log(f"{stage}/train/acc", train_accuracy, prog_bar=True)  # the results board reads val/*/acc

    def on_validation_epoch_end(self) -> None:
        self._log_split_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_split_metrics("test")
