"""The plain PyTorch loop grokkit is compared with, and the machine's matmul ceiling."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch.optim.swa_utils import AveragedModel

from grokkit.models import Decoder, TwoHopModel
from grokkit.train.ema import update_ema
from grokkit.train.losses import item_losses
from grokkit.train.optim import fused_adamw


def grokkit_optimizer(model: torch.nn.Module, module_hparams: dict) -> torch.optim.AdamW:
    """The optimizer ``GrokModule`` builds for ``model`` from its hyperparameters."""
    hp = module_hparams
    return fused_adamw(model, hp["lr"], hp["betas"], hp["eps"], hp["weight_decay"], hp["decay"])


class PlainLoop:
    """The same model, batch, data, optimizer and loss as grokkit, with nothing around them.

    It keeps what the config's recipe computes every step: ``bf16-mixed`` autocasts the forward and loss as
    Lightning's plugin does, a ``clip_val`` clips the gradients (``clip_algorithm`` as Lightning names it), and
    the module's ``ema_decay`` updates an EMA. What it leaves out is the trainer's own work: hooks, logging, the
    non-finite check, the schedule. :meth:`like` takes the precision and clipping from a trainer.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        table: torch.Tensor,
        batch_size: int,
        module_hparams: dict,
        precision: str = "32-true",
        clip_val: float | None = None,
        clip_algorithm: str = "norm",
    ) -> None:
        if precision not in ("32-true", "bf16-mixed"):
            raise ValueError(f"PlainLoop: precision {precision!r} is not timed; use 32-true or bf16-mixed")
        self.model, self.table, self.batch_size = model.train(), table, batch_size
        self.optimizer = grokkit_optimizer(model, module_hparams)
        self.every_position = module_hparams["train_logits"] == "all"
        self.loss, self.smoothing = module_hparams["loss"], module_hparams["label_smoothing"]
        self.generator = torch.Generator(device=table.device).manual_seed(0)
        self.bf16 = precision == "bf16-mixed"
        self.clip_val, self.clip_algorithm = clip_val, clip_algorithm
        self.parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.ema_decay = module_hparams["ema_decay"]
        self.ema = AveragedModel(model, table.device, use_buffers=True) if self.ema_decay else None
        self.keep = torch.ones((), device=table.device)

    @classmethod
    def like(
        cls,
        trainer: L.Trainer,
        module_hparams: dict,
        model: torch.nn.Module,
        table: torch.Tensor,
        batch_size: int,
    ) -> PlainLoop:
        """The loop making the update ``trainer`` makes with these hyperparameters: its precision and clipping."""
        algorithm = GradClipAlgorithmType(trainer.gradient_clip_algorithm or "norm").value
        precision, clip_val = str(trainer.precision), trainer.gradient_clip_val
        return cls(model, table, batch_size, module_hparams, precision, clip_val, algorithm)

    def step(self) -> None:
        rows = torch.randint(
            len(self.table), (self.batch_size,), generator=self.generator, device=self.table.device
        )
        self.train_on(self.table[rows])

    def train_on(self, items: torch.Tensor) -> None:
        """One update on ``items``."""
        autocast = contextlib.nullcontext()
        if self.bf16:  # cache_enabled=False as in Lightning's plugin: each use of a weight casts it again
            autocast = torch.autocast(items.device.type, torch.bfloat16, cache_enabled=False)
        with autocast:
            inputs, targets, positions = self.model.training_io(items, self.every_position)
            logits = self.model(inputs, positions=positions)
            flat = positions is not None
            loss = item_losses(logits, targets, self.loss, self.smoothing, flat).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_val and self.clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.parameters, self.clip_val)
        elif self.clip_val:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_val)
        self.optimizer.step()
        if self.ema is not None:
            update_ema(self.ema, self.model, self.ema_decay, self.keep)

    def unembedded(self) -> int:
        return unembedded_positions(self.model, self.table, self.every_position)

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - start


def timed_window(step: Callable[[], None], seconds: float, min_steps: int = 1) -> float:
    """Seconds per call of ``step``, calling it for at least ``seconds`` (and ``min_steps`` times)."""
    calls, start = 0, time.perf_counter()
    while calls < min_steps or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return (time.perf_counter() - start) / calls


def matmul_step(n: int) -> tuple[Callable[[], None], float]:
    """A square fp32 matmul of size ``n`` and its FLOPs."""
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    return (lambda: torch.mm(a, b, out=c)), 2.0 * n**3


def unembedded_positions(model: TwoHopModel, items: torch.Tensor, every_position: bool) -> int:
    """Positions per item at which a training step computes logits."""
    inputs, _, positions = model.training_io(items[:1], every_position)
    return inputs.size(1) if positions is None else positions.size(1)


def train_flops_per_step(model: Decoder, batch_size: int, seq_len: int, unembedded: int) -> float:
    """6 x weights applied per token x tokens: block matrices once per application at every position, the
    unembedding at the ``unembedded`` positions a step computes logits at. Biases, norms and attention
    scores are left out."""
    block_weights = sum(p.numel() for p in model.blocks.parameters() if p.dim() >= 2)
    applied = (
        block_weights * model.n_layers / len(model.blocks) * seq_len + model.wte.weight.numel() * unembedded
    )
    return 6.0 * applied * batch_size
