"""``grokkit fit|validate|test --config ...``: LightningCLI with grokkit's links, defaults and error messages."""

from __future__ import annotations

import os
import sys

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from grokkit.checkpointing import AtomicCheckpointIO, TrajectoryCheckpoint
from grokkit.data import TwoHopDataModule
from grokkit.errors import ConfigError
from grokkit.module import GrokModule
from grokkit.probes import Probe
from grokkit.probes.registry import explain_class_path_error, load_entry_point_probes

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "default", "default_hp_metric": False},
    },
    "check_val_every_n_epoch": None,
    "val_check_interval": 200,
    "log_every_n_steps": 50,
    "num_sanity_val_steps": 0,
}
PROGRESS_NAMES = {
    "train/loss": "loss",
    "val/train/acc": "train",
    "val/test_inferred_iid/acc": "iid",
    "val/test_inferred_ood/acc": "ood",
}


class GrokProgressBar(RichProgressBar):
    """The step and the few numbers that tell the grokking story, under short names."""

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        return {short: metrics[name] for name, short in PROGRESS_NAMES.items() if name in metrics}


class GrokkitParser(LightningArgumentParser):
    """Config errors in one line (jsonargparse would print the whole usage first)."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse probing alternatives internally
            return super().error(message, ex)
        command = self.prog.replace(" [options]", "")
        message = explain_class_path_error(message) or " ".join(message.split())
        sys.stderr.write(f"grokkit: error: {message} (see `{command} --help`)\n")
        sys.exit(2)


def set_step(trainer: L.Trainer, step: int) -> None:
    """Make ``trainer.global_step`` read ``step`` outside fit, so results of a saved checkpoint land at its step."""
    loop = trainer.fit_loop.epoch_loop
    loop.automatic_optimization.optim_progress.optimizer.step.total.completed = step  # global_step
    loop._batches_that_stepped = step  # the step Lightning logs metrics at


class GrokkitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.item_len", "model.item_len", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.save_last": True, "checkpoint.save_top_k": 0, "checkpoint.every_n_train_steps": 1000}
        )
        parser.add_lightning_class_args(TrajectoryCheckpoint, "trajectory")

    def before_instantiate_classes(self) -> None:
        """Pin the run's version in the config, so its saved config.yaml resumes into the same run directory;
        ``validate``/``test`` of a run write into a ``validate``/``test`` folder inside it, not over it."""
        logger = self._get(self.config, "trainer").get("logger")
        if not (isinstance(logger, Namespace) and logger.class_path.endswith("TensorBoardLogger")):
            return
        init = logger.init_args
        if self.subcommand == "fit" and init.get("version") is None:
            init.version = TensorBoardLogger(init.save_dir, name=init.get("name", "default")).version
        elif self.subcommand in ("validate", "test") and init.get("sub_dir") is None:
            init.sub_dir = self.subcommand

    def instantiate_trainer(self, **kwargs):
        """Atomic checkpoint writes, a progress bar, and learning-rate and weight-decay curves, always."""
        configured = self._get(self.config_init, "trainer", default={})
        callbacks, plugins = (_as_list(configured.get(key)) for key in ("callbacks", "plugins"))
        if not any(isinstance(c, RichProgressBar) for c in callbacks):
            callbacks.append(GrokProgressBar(refresh_rate=50))
        if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
            callbacks.append(LearningRateMonitor(logging_interval="step", log_weight_decay=True))
        callbacks.sort(key=lambda c: c.stage if isinstance(c, Probe) else 0)  # measurements before detectors
        return super().instantiate_trainer(callbacks=callbacks, plugins=[*plugins, AtomicCheckpointIO()], **kwargs)

    def before_validate(self) -> None:
        """`grokkit validate --ckpt_path CKPT` publishes at CKPT's step (Lightning restores it only in fit)."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path and os.path.isfile(ckpt_path):
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            set_step(self.trainer, checkpoint["global_step"])


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def main(args: ArgsType = None) -> None:
    if os.getcwd() not in sys.path:  # `class_path: plugins.<name>.<Class>` from the repo root, nothing installed
        sys.path.insert(0, os.getcwd())
    load_entry_point_probes()
    argv = sys.argv[1:] if args is None else args
    try:
        if isinstance(argv, list) and argv[:1] == ["analyze"]:
            from grokkit.analyze import analyze_command  # imported here: it builds on GrokkitCLI

            return analyze_command(argv[1:])
        GrokkitCLI(
            GrokModule,
            TwoHopDataModule,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_class=GrokkitParser,
            args=args,
        )
    except ValueError as error:  # a ConfigError, or one that jsonargparse wrapped while instantiating a class
        cause = error
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        print(f"grokkit: error: {cause}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
