"""The training forward, compiled where it pays: through ``torch.compile`` on CUDA by default, eager elsewhere.

On a GPU these models are many small kernels (4-5 tokens, widths of 128-768), and compiling fuses them. On a
CPU a compile costs tens of seconds and a C++ compiler, and did not speed up the default run's step on this
project's 2-core machine (``docs/demo_search.md``), so ``auto`` leaves the CPU eager (``True`` compiles there).
Evaluation and probes always run the eager network, so patched and state-returning forwards never recompile.
``reduce-overhead`` compiles in torch.compile's mode of that name, which on CUDA replays the training forward's
kernels, and its backward's, as CUDA graphs (the loss, clipping, optimizer and EMA stay eager): for small
per-token work, such as Wang et al.'s 8 x 768 decoder on 4 tokens, launching kernels can cost as much as
running them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from grokkit.errors import ConfigError

CompileSetting = bool | Literal["auto", "reduce-overhead"]


class TrainingForward:
    """Calls ``net`` eagerly or through ``torch.compile`` (built on first use, sharing ``net``'s weights).

    ``auto`` compiles on the device types in ``auto_devices``; if the first compiled call fails there (no
    working compiler, an op the backend lacks), it warns once and trains eagerly from that step on. ``True``
    compiles on any device and lets a failure stop the run; ``reduce-overhead`` does too, in that mode (CUDA
    graphs on a CUDA device); ``False`` never compiles.
    """

    auto_devices: tuple[str, ...] = ("cuda",)
    backend: str | Callable = "inductor"

    def __init__(self, net: nn.Module, setting: CompileSetting) -> None:
        self.net, self.setting = net, setting
        self.compiled: Callable[..., torch.Tensor] | None = None  # a plain attribute: no state-dict keys
        self.proven = False  # a compiled call has succeeded, so later errors are the run's own
        self.gave_up = False

    def compiles_on(self, device: torch.device) -> bool:
        if self.setting == "auto":
            return device.type in self.auto_devices and not self.gave_up
        return self.setting in (True, "reduce-overhead")

    def __call__(self, inputs: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if not self.compiles_on(inputs.device):
            return self.net(inputs, positions=positions)
        if self.compiled is None:
            mode = "reduce-overhead" if self.setting == "reduce-overhead" else None
            self.compiled = torch.compile(self.net, backend=self.backend, mode=mode)
        if self.setting == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new step: the last step's graph outputs are free
        if self.setting != "auto" or self.proven:
            return self.compiled(inputs, positions=positions)
        try:
            logits = self.compiled(inputs, positions=positions)
        except Exception as error:  # dynamo and inductor report a broken toolchain in several exception types
            self.compiled, self.gave_up = None, True
            reason = (str(error).strip().splitlines() or [""])[0]
            rank_zero_warn(
                f"model.compile=auto: torch.compile failed on {inputs.device.type} ({type(error).__name__}: "
                f"{reason}); training eagerly. Set model.compile=false to skip the attempt."
            )
            return self.net(inputs, positions=positions)
        self.proven = True
        return logits


def refuse_accumulation(setting: CompileSetting, accumulate_grad_batches: int) -> None:
    """CUDA graphs keep a batch's gradients in their memory pool, which the next batch's replay reuses."""
    if setting == "reduce-overhead" and accumulate_grad_batches > 1:
        raise ConfigError(
            f"model.compile=reduce-overhead cannot accumulate gradients over {accumulate_grad_batches} batches (its "
            "CUDA graphs reuse the memory holding a batch's gradients); set trainer.accumulate_grad_batches=1 or "
            "model.compile=true",
            "model.compile",
            "trainer.accumulate_grad_batches",
        )
