"""Lightning's per-step hook dispatch, made cheap: a grokking run takes 10^4-10^6 steps of a few milliseconds.

Lightning calls every hook inside ``trainer.profiler.profile(...)``: six batch hooks on every callback at
every step (90 calls with the default config's 15 callbacks, of which 4 do something), besides the module's
own. Its default profiler records nothing, but builds a generator-based context for each call. grokkit's
trainer gets :class:`NoProfiler` instead, and has Lightning skip the inherited no-op hooks
(:func:`grokkit.lightning_private.skip_inherited_batch_hooks`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from lightning.pytorch.profilers import PassThroughProfiler


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler, which records nothing, without its cost: ``profile`` returns one shared
    no-op context instead of building a generator-based one for each hook call."""

    _nothing = nullcontext()

    def profile(self, action_name: str) -> AbstractContextManager[None]:
        return self._nothing
