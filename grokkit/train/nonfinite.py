"""Whether a step's loss and gradients are finite, watched on the device so that no step waits for the host.

Every step's verdict stays on the device: a bad step's update is masked inside the fused AdamW kernel (the
``found_inf`` input the gradient scaler uses), and the host reads the verdict only when asked (every N
steps, before a validation or a checkpoint), so a GPU never stalls on it. On a CPU the read is free and is
done every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import lightning as L
import torch

from grokkit.errors import NonFiniteError
from grokkit.torch_private import any_non_finite
from grokkit.train.checkpointing import last_good_checkpoint


class NonFiniteWatch:
    """Per step, on the device: is the loss or a gradient NaN or infinite, and which step was the first?

    ``stop``: once a step is bad, every later update is masked too, so the weights stay those before the first
    bad step until the host reads the verdict and stops the run. ``skip``: only the bad step's update is
    masked, and the masked steps are counted. ``every``: steps between host reads (``None``: every step on a
    CPU, every logging step on an accelerator).
    """

    KINDS = ("", "loss", "gradient")

    def __init__(self, mode: Literal["stop", "skip"], every: int | None) -> None:
        self.mode, self.every = mode, every
        self.skipped_before = 0  # masked updates before a resume (from the checkpoint)
        self.first_step: torch.Tensor | None = None  # step of the first bad one, -1 while none
        self.first_kind: torch.Tensor | None = None  # index into KINDS (a float)
        self.mask: torch.Tensor | None = None  # () float: 1.0 masks the coming update (fused AdamW found_inf)
        self.skipped: torch.Tensor | None = None  # bad steps seen in this process

    def observe(self, step: int, loss: torch.Tensor, parameters: Sequence[torch.nn.Parameter] | None) -> None:
        """Record this step's verdict; ``parameters`` ``None`` checks the loss only."""
        if self.first_step is None:
            self.first_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self.first_kind = torch.zeros((), device=loss.device)
            self.skipped = torch.zeros((), dtype=torch.long, device=loss.device)
        # a gradient is a leaf outside autograd: no detach (~1 us a tensor)
        grads = [p.grad for p in parameters if p.grad is not None] if parameters is not None else []
        grad_bad = any_non_finite(grads) if grads else torch.zeros((), device=loss.device)
        # as few operations as the record takes (each costs a few microseconds of a CPU step)
        kind = torch.where(torch.isfinite(loss), 2 * grad_bad, 1.0)  # index into KINDS
        bad = kind > 0
        new = bad & (self.first_step < 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.first_kind = torch.where(new, kind, self.first_kind)
        self.mask = (self.first_step >= 0).float() if self.mode == "stop" else bad.float()
        self.skipped = self.skipped + bad

    def read_due(self, step: int, device: torch.device, log_every: int) -> bool:
        """Whether the host reads the verdict after ``step``: a read stalls a GPU until its queue drains."""
        every = self.every or (1 if device.type == "cpu" else log_every)
        return (step + 1) % every == 0

    def raise_if_bad(self, trainer: L.Trainer) -> None:
        """In ``stop`` mode, stop the run if a step was bad, naming the first one (one host read)."""
        if self.mode != "stop" or self.first_step is None:
            return
        step = int(self.first_step)  # one host read; a second only to name a bad step's kind
        if step >= 0:
            raise NonFiniteError(
                f"non-finite {self.KINDS[int(self.first_kind)]} at step {step}; the run stopped before updating the weights, "
                f"last good checkpoint: {last_good_checkpoint(trainer)}; fix: lower model.lr, set "
                "trainer.gradient_clip_val (e.g. 1.0) or set model.nonfinite=skip, then resume with --ckpt_path last"
            )

    def skipped_total(self) -> torch.Tensor | int:
        """Updates skipped so far in ``skip`` mode, resumes included (a device tensor once training ran)."""
        if self.mode != "skip":
            return 0
        return self.skipped_before + (self.skipped if self.skipped is not None else 0)
