"""Lightning's per-step hook dispatch, made cheap: a grokking run takes 10^4-10^6 steps of a few milliseconds.

Each step Lightning calls six batch hooks on every callback, each inside ``trainer.profiler.profile(...)``,
also when the callback inherits the hook from ``Callback`` and it does nothing: with the default config's 14
callbacks, 84 calls and their profiler contexts a step, of which 4 do something (``make bench``'s fixed-cost
row, bench/RESULTS.md, shows what skipping the rest saves).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.profilers import PassThroughProfiler

BATCH_HOOKS = (  # called once per batch (training step or evaluation batch), on every callback
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
)


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler, which records nothing, without its cost: ``profile`` returns one shared
    no-op context instead of building a generator-based one for each of a step's ~200 hook calls."""

    _nothing = nullcontext()

    def profile(self, action_name: str) -> AbstractContextManager:
        return self._nothing


def skip_inherited_batch_hooks(callbacks: list[Callback]) -> None:
    """Set the batch hooks that a callback inherits unchanged from ``Callback`` (no-ops) to ``None`` on the
    instance: Lightning calls a callback's hook only when it is callable, so it then skips them.

    A hook the callback's class overrides, or that the instance set itself, is left alone.
    """
    for callback in callbacks:
        for hook in BATCH_HOOKS:
            if hook not in vars(callback) and getattr(type(callback), hook) is getattr(Callback, hook):
                setattr(callback, hook, None)
