"""Lightning's per-step hook dispatch, made cheap: a grokking run takes 10^4-10^6 steps of a few milliseconds.

Lightning calls every hook inside ``trainer.profiler.profile(...)``: six batch hooks on every callback at
every step (90 calls with the default config's 15 callbacks, of which 4 do something), besides the module's
own. Its default profiler records nothing, but builds a generator-based context for each call. grokkit's
trainer gets :class:`NoProfiler` instead, and has Lightning skip the inherited no-op hooks
(:func:`grokkit.lightning_private.skip_inherited_batch_hooks`). Around every hook call it also names the
running hook in an attribute of the module, ~45 times a step, which :class:`PlainAttributes` makes cheap.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from lightning.pytorch.profilers import PassThroughProfiler


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler, which records nothing, without its cost: ``profile`` returns one shared
    no-op context instead of building a generator-based one for each hook call."""

    _nothing = nullcontext()

    def profile(self, action_name: str) -> AbstractContextManager[None]:
        return self._nothing


class PlainAttributes(torch.nn.Module):
    """A module whose plain attributes are set without nn.Module's bookkeeping (~2 us a set, 0.7 us here).

    nn.Module's ``__setattr__`` looks for a parameter, submodule or buffer to register or replace. An
    attribute already in the instance dict is none of those, and becomes one only if the new value is a tensor
    or a module; any other value is set as Python sets it.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__ and not isinstance(value, torch.Tensor | torch.nn.Module):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
