"""The plain PyTorch loop grokkit is compared with, and the machine's matmul ceiling."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from grokkit.models import Decoder, TwoHopModel
from grokkit.train.losses import item_losses
from grokkit.train.optim import fused_adamw


def grokkit_optimizer(model: torch.nn.Module, module_hparams: dict) -> torch.optim.AdamW:
    """The optimizer ``GrokModule`` builds for ``model`` from its hyperparameters."""
    hp = module_hparams
    return fused_adamw(model, hp["lr"], hp["betas"], hp["eps"], hp["weight_decay"], hp["decay"])


class PlainLoop:
    """The same model, batch, data, optimizer and loss as grokkit, with nothing around them."""

    def __init__(
        self, model: torch.nn.Module, table: torch.Tensor, batch_size: int, module_hparams: dict
    ) -> None:
        self.model, self.table, self.batch_size = model.train(), table, batch_size
        self.optimizer = grokkit_optimizer(model, module_hparams)
        self.every_position = module_hparams["train_logits"] == "all"
        self.generator = torch.Generator(device=table.device).manual_seed(0)

    def step(self) -> None:
        rows = torch.randint(
            len(self.table), (self.batch_size,), generator=self.generator, device=self.table.device
        )
        inputs, targets, positions = self.model.training_io(self.table[rows], self.every_position)
        logits = self.model(inputs, positions=positions)
        loss = item_losses(logits, targets, flat=positions is not None).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

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
