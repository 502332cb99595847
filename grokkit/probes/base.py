"""The probe base class: when to run, on what, in which mode, and where results go.

A probe is a Lightning ``Callback`` that runs right after a validation whenever its schedule says so
(every N steps, or at log-spaced steps), in eval mode without gradients, on rank zero only, and publishes a
flat dict of results: scalars go to TensorBoard as ``probe/<name>/<key>`` and everything to the run's
results board (``summary.json``). Subclasses implement :meth:`compute` and, optionally, :meth:`render`.

``stage`` orders probes within one validation: measurements (0) run before detectors (1) that read them,
and classifiers (2) last; the CLI sorts probes by it.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from grokkit.allowed import Choice, Range
from grokkit.errors import ProbeError, StorageError
from grokkit.lightning_private import callback_state_key, drop_callback_state
from grokkit.ranges import check_arguments
from grokkit.train.board import ResultsBoard
from grokkit.train.checkpointing import save_training_state
from grokkit.train.schedule import next_log_spaced


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().removesuffix("_probe")


class Probe(Callback):
    """Base class of every probe.

    Args:
        every_n_steps: Run at the first validation at least this many steps after the last run.
        per_decade: Instead, run at log-spaced steps: this many per factor of 10 (overrides every_n_steps).
        sample_size: Queries per split drawn once per run (probes that sample queries use it).
        seed: Seed of that sample.
    """

    stage: int = 0
    # What each constructor argument of a subclass may hold, checked on the parsed config before anything is
    # built (grokkit.ranges), e.g. {"split": EVALUATED, "top_k": Range(1, 1000)}; merged with Probe's own.
    argument_ranges: ClassVar[dict[str, Range | Choice]] = {}

    def __init__(
        self, every_n_steps: int = 1, per_decade: int | None = None, sample_size: int = 300, seed: int = 0
    ) -> None:
        # every argument in its range (grokkit.ranges), named by the class: a subclass's `name` may read
        # attributes it sets after this constructor
        check_arguments(type(self).__name__, type(self), locals())
        self.every_n_steps, self.per_decade = every_n_steps, per_decade
        self.sample_size, self.seed = sample_size, seed
        self.last_run_step: int | None = None

    @property
    def name(self) -> str:
        return snake_case(type(self).__name__)

    @cached_property  # Lightning reads it at every hook call: ~0.4 ms a step when rebuilt each time
    def state_key(self) -> str:
        return callback_state_key(self, name=self.name)

    # ----- schedule -----
    def is_due(self, step: int) -> bool:
        last = self.last_run_step
        if last is None:
            return True
        if self.per_decade is None:
            return step - last >= self.every_n_steps
        return step >= next_log_spaced(last, self.per_decade)  # the trajectory's log-spaced steps

    def sample(self, items: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The same ``sample_size`` rows of ``items`` (and of aligned tensors) every time, fixed by ``seed``."""
        generator = torch.Generator().manual_seed(self.seed)
        rows = torch.randperm(len(items), generator=generator)[: self.sample_size].to(items.device)
        return (items[rows], *(other[rows] for other in others))

    def check(self, pl_module: L.LightningModule) -> None:
        """Refuse, in one line, settings that ``pl_module``'s model cannot run; ``grokkit`` calls it before it
        builds the data or claims the run directory."""

    # ----- running -----
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        ResultsBoard.of(trainer)  # where results go: a missing board is refused before training starts

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        step = trainer.global_step
        offline = trainer.state.fn != TrainerFn.FITTING  # `grokkit validate` runs every probe, due or not
        if offline or self.is_due(step):
            self.run(trainer, pl_module, step)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> dict[str, Any]:
        """Compute in eval mode without gradients, restore the mode, publish.

        If the probe raises, the training state is saved to the run's ``last.ckpt`` (during ``fit``) and a
        :class:`~grokkit.errors.ProbeError` names the probe and the step.
        """
        was_training = pl_module.training
        try:
            pl_module.eval()
            try:
                with torch.inference_mode(False), torch.no_grad():
                    result = self.compute(trainer, pl_module)
            finally:
                pl_module.train(was_training)
            self.publish(trainer, step, result)
        except (ProbeError, StorageError):  # a full disk is no fault of the probe
            raise
        except Exception as error:
            raise self.failure(trainer, step, error) from error
        self.last_run_step = step
        return result

    def failure(self, trainer: L.Trainer, step: int, error: Exception) -> ProbeError:
        """The one-line error for a probe that raised, after saving the training state if a fit is running."""
        what = " ".join(repr(error).split())
        what = what if len(what) <= 200 else what[:197] + "..."
        remedy = "fix the probe or remove it from trainer.callbacks"
        try:
            saved = save_training_state(trainer)
        except Exception as save_error:  # noqa: BLE001 - report both, never hide the probe's error
            return ProbeError(
                f"probe {self.name!r} failed at step {step}: {what}; saving the training state failed too "
                f"({type(save_error).__name__}: {save_error}); {remedy}"
            )
        if saved is None:
            return ProbeError(f"probe {self.name!r} failed at step {step}: {what}; {remedy}")
        return ProbeError(
            f"probe {self.name!r} failed at step {step}: {what}; training state saved to {saved}; {remedy}, "
            "then resume with --ckpt_path last"
        )

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Measure something; return a flat dict (scalars are logged, everything goes to the summary)."""
        raise NotImplementedError

    def render(self, writer: Any, step: int, result: dict[str, Any]) -> None:
        """Optionally draw figures with a TensorBoard ``SummaryWriter``."""

    def publish(self, trainer: L.Trainer, step: int, result: dict[str, Any]) -> None:
        scalars = {
            f"probe/{self.name}/{key}": float(value)
            for key, value in result.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        for logger in trainer.loggers:
            if scalars:
                logger.log_metrics(scalars, step=step)
            if isinstance(logger, TensorBoardLogger):
                self.render(logger.experiment, step, result)
        ResultsBoard.of(trainer).publish(self.name, step, result)

    def state_dict(self) -> dict[str, Any]:
        return {"last_run_step": self.last_run_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_run_step = state_dict["last_run_step"]

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Only a fit continues a probe's state. ``grokkit validate|test`` start it fresh: a full checkpoint's
        state holds the run at the checkpoint's own step, which the probe would count twice."""
        if trainer.state.fn != TrainerFn.FITTING:
            drop_callback_state(checkpoint, self)


def check_probes(callbacks: list[Callback], pl_module: L.LightningModule) -> None:
    """Every probe's :meth:`Probe.check` among ``callbacks``: what the model cannot run is refused first."""
    for callback in callbacks:
        if isinstance(callback, Probe):
            callback.check(pl_module)
