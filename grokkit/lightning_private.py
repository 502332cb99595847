"""Every use of Lightning's private API in grokkit, or of behaviour its docs do not promise, behind
public-looking names; nothing else may use one.

Checked against Lightning 2.6.6 (pyproject pins ``lightning<2.7``). Each item below has no public
equivalent in that version; on a Lightning upgrade, re-check this file (and ``tests/test_layout.py``)
first. Everywhere else grokkit uses Lightning's public API only.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI


def set_step(trainer: L.Trainer, step: int) -> None:
    """Make ``trainer.global_step`` read ``step`` outside fit, so results of a saved checkpoint land at its step."""
    loop = trainer.fit_loop.epoch_loop
    loop.automatic_optimization.optim_progress.optimizer.step.total.completed = step  # global_step
    loop._batches_that_stepped = step  # the step Lightning logs metrics at


def training_batches_drawn(trainer: L.Trainer) -> int:
    """Training batches the fit loop has taken so far, as restored from a checkpoint: with gradient accumulation
    several a step, and a step's first few if a run was stopped inside it (SIGTERM)."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.ready


def validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates right after the current training batch (asked in ``on_train_batch_end``)."""
    loop = trainer.fit_loop.epoch_loop
    try:
        return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher))
    except (AttributeError, TypeError):  # another Lightning version: save at the batch end as before
        return False


def callback_state_key(callback: Callback, **identity: Any) -> str:
    """A callback's ``state_key`` in Lightning's own format, so checkpoints keep restoring across versions."""
    return callback._generate_state_key(**identity)


def drop_callback_state(checkpoint: dict[str, Any], callback: Callback) -> None:
    """Keep Lightning from loading ``callback``'s state from ``checkpoint``: called in ``on_load_checkpoint``,
    which Lightning calls on every callback, with the dict it then reads each ``load_state_dict``'s state from."""
    (checkpoint.get("callbacks") or {}).pop(callback.state_key, None)


def last_checkpoints(callback: ModelCheckpoint, trainer: L.Trainer) -> set[str]:
    """The ``last*.ckpt`` files of a checkpoint callback, as ``--ckpt_path last`` finds them."""
    return callback._find_last_checkpoints(trainer)


def last_saved_step(callback: ModelCheckpoint) -> int:
    """The step of the newest checkpoint ``callback`` saved in this process (0: none)."""
    return callback._last_global_step_saved


class SaveOnDemandCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose saves a subclass can move to another hook (Lightning saves in fixed hooks)."""

    @property
    def every_n_train_steps(self) -> int:
        return self._every_n_train_steps  # 0 when off

    def save_now(self, trainer: L.Trainer, top_k: bool = True) -> None:
        """What Lightning saves at a due step: the top-k checkpoints (with ``top_k``) and ``last.ckpt``."""
        if self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if top_k:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)


class ConfiguredModelCLI(LightningCLI):
    """A ``LightningCLI`` that keeps the configured model when given ``--ckpt_path``.

    Lightning would load the checkpoint while parsing (a damaged file then fails with a traceback) and silently
    replace the model's hyperparameters with the checkpoint's, so a resume with a lowered ``model.lr`` would
    not lower it. The subclass checks the checkpoint against the configured model instead.
    """

    def _parse_ckpt_path(self) -> None:
        pass


TRAINING_BATCH_HOOKS = (  # called on every callback at every training step
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
BATCH_HOOKS = (
    *TRAINING_BATCH_HOOKS,
    *(f"on_{stage}_batch_{end}" for stage in ("validation", "test") for end in ("start", "end")),
)


def inherits_unchanged(callback: Callback, hook: str) -> bool:
    """Whether ``callback``'s class takes ``hook`` from ``Callback`` as it is (a no-op)."""
    return getattr(type(callback), hook) is getattr(Callback, hook)


def skip_inherited_batch_hooks(callbacks: list[Callback]) -> None:
    """Set the batch hooks that a callback inherits unchanged from ``Callback`` (no-ops) to ``None`` on the
    instance, so that Lightning no longer calls them: its hook caller (``trainer/call.py``,
    ``_call_callback_hooks``) skips a hook attribute that is not callable, before building the profiler
    context and the call (six of them per callback per training step).

    A hook the callback's class overrides, or that the instance set itself, is left alone.
    """
    for callback in callbacks:
        for hook in BATCH_HOOKS:
            if hook not in vars(callback) and inherits_unchanged(callback, hook):
                setattr(callback, hook, None)
