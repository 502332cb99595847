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
from grokkit.torch_private import flag_non_finite_
from grokkit.train.checkpointing import last_good_checkpoint


class NonFiniteWatch:
    """Per step, on the device: is the loss or a gradient NaN or infinite, and which step was the first?

    Two flags, [this step is bad, its loss is bad], set by the gradient scaler's check kernel, and a counter
    beside each that the flag advances after every step: three device operations a step, four in ``skip``
    mode, and no allocation (on a GPU, as few kernel launches). ``stop``: the flags are never cleared, so once
    a step is bad every later update is masked too and the weights stay those before the first bad step until
    the host reads the counters and stops the run; the first bad step is the last one observed less the steps
    counted bad, plus one, and it was the loss's if the loss has been bad as many steps. ``skip``: the flags are
    cleared before each step, so only a bad step's update is masked, and the counter counts the masked steps.
    ``every``: steps between host reads (``None``: every step on a CPU, every logging step on an accelerator).
    """

    def __init__(self, mode: Literal["stop", "skip"], every: int | None) -> None:
        self.mode, self.every = mode, every
        self.skipped_before = 0  # masked updates before a resume (from the checkpoint)
        self.flags: torch.Tensor | None = None  # (2,) float: 1.0 where [the step, its loss] is bad
        self.counts: torch.Tensor | None = None  # (2,) float: steps observed with each flag set, this process
        self.mask: torch.Tensor | None = None  # flags[0]: 1.0 masks the coming update (fused AdamW found_inf)
        self.loss_bad: torch.Tensor | None = None  # flags[1]
        self.one: torch.Tensor | None = None  # the check kernel's scale
        self.last_step = -1  # the step observed last

    def observe(self, step: int, loss: torch.Tensor, parameters: Sequence[torch.nn.Parameter] | None) -> None:
        """Record this step's verdict; ``parameters`` ``None`` checks the loss only."""
        if self.flags is None or self.flags.device != loss.device:  # the first step, or a fit elsewhere
            self.place(loss.device)
        if self.mode == "skip":
            self.flags.zero_()
        # a gradient is a leaf outside autograd: no detach (~1 us a tensor)
        grads = [p.grad for p in parameters if p.grad is not None] if parameters is not None else []
        flag_non_finite_([loss], self.loss_bad, self.one)
        flag_non_finite_([loss, *grads], self.mask, self.one)
        self.counts.add_(self.flags)
        self.last_step = step

    def reset(self, skipped_before: int | None = None) -> None:
        """A new fit, or a restored checkpoint (``skipped_before``: its count of masked updates): clear the flags
        and counters, so that a stop in an earlier fit of the module masks nothing in this one; in ``skip``
        mode the updates counted so far join ``skipped_before`` (one host read)."""
        if self.counts is not None:
            if skipped_before is None and self.mode == "skip":
                self.skipped_before += int(self.counts[0].item())
            self.counts.zero_()
            self.flags.zero_()
        if skipped_before is not None:
            self.skipped_before = skipped_before
        self.last_step = -1

    def place(self, device: torch.device) -> None:
        """Flags and counters on ``device``, with what was counted so far (zeros on the first step)."""
        self.flags = torch.zeros(2, device=device) if self.flags is None else self.flags.to(device)
        self.counts = torch.zeros(2, device=device) if self.counts is None else self.counts.to(device)
        self.mask, self.loss_bad = self.flags[0], self.flags[1]  # views, made once (~1 us each)
        self.one = torch.ones((), device=device)

    def read_due(self, step: int, device: torch.device, log_every: int) -> bool:
        """Whether the host reads the verdict after ``step``: a read stalls a GPU until its queue drains."""
        every = self.every or (1 if device.type == "cpu" else log_every)
        return (step + 1) % every == 0

    def raise_if_bad(self, trainer: L.Trainer) -> None:
        """In ``stop`` mode, stop the run if a step was bad, naming the first one (one host read)."""
        if self.mode != "stop" or self.counts is None:
            return
        bad, loss_bad = self.counts.tolist()  # steps bad since the first one, steps with a bad loss since
        if bad:
            kind, first = "loss" if loss_bad == bad else "gradient", self.last_step - int(bad) + 1
            raise NonFiniteError(
                f"non-finite {kind} at step {first}; the run stopped before updating the weights, "
                f"last good checkpoint: {last_good_checkpoint(trainer)}; fix: lower model.lr, set "
                "trainer.gradient_clip_val (e.g. 1.0) or set model.nonfinite=skip, then resume with --ckpt_path last"
            )

    def skipped_total(self) -> torch.Tensor | int:
        """Updates skipped so far in ``skip`` mode, resumes included (a device tensor once training ran)."""
        if self.mode != "skip":
            return 0
        return self.skipped_before + (self.counts[0] if self.counts is not None else 0)
