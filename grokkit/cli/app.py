"""``GrokkitCLI``: LightningCLI with grokkit's links, checks and callbacks; :mod:`grokkit.cli.factory` builds it.

Every number is checked against its range right after parsing (:mod:`grokkit.ranges`), the probes' settings,
the dataset and ``--ckpt_path`` before the run starts, and a new run claims its directory only after them all.
"""

from __future__ import annotations

import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from grokkit.cli.building import BuildingCLI
from grokkit.cli.checkpoints import checked_ckpt_path, load_checkpoint
from grokkit.cli.commands import TRAINER_COMMANDS
from grokkit.cli.matching import check_checkpoint
from grokkit.cli.rundir import check_run_directory, claim_run_directory, refuse_finished_run
from grokkit.cli.runlock import hold_run
from grokkit.cli.scores import print_scores
from grokkit.cli.settings import check_settings, config_sections
from grokkit.lightning_private import set_step
from grokkit.probes.base import check_probes
from grokkit.train.checkpointing import ResumableCheckpoint, TrajectoryCheckpoint


class GrokkitCLI(BuildingCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name in TRAINER_COMMANDS}

    new_version = False  # whether this fit chose its run's version itself (and must claim the directory)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.item_len", "model.item_len", apply_on="instantiate")
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.save_last": True, "checkpoint.save_top_k": 0, "checkpoint.every_n_train_steps": 1000}
        )
        parser.add_lightning_class_args(TrajectoryCheckpoint, "trajectory")
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="CPU threads for torch (null: torch's default, one per core). The thread count sets the "
            "order of floating-point sums, so a fixed count gives the same curves on every machine.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, then refuse any number outside its range before anything (the seed included) is set."""
        super().parse_arguments(parser, args)
        check_settings(self.config.get(self.config.get("subcommand"), self.config), config_sections(self))

    def before_instantiate_classes(self) -> None:
        """Pin the run's version, so its config.yaml resumes into the same directory (claimed in :meth:`before_fit`);
        ``validate``/``test`` write into a folder of that name inside the run. Set the thread count."""
        threads = self.section(self.config, "threads")
        if threads is not None:
            torch.set_num_threads(threads)
        logger = self.section(self.config, "trainer").get("logger")
        if not (isinstance(logger, Namespace) and logger.class_path.endswith("TensorBoardLogger")):
            return
        init = logger.init_args
        if self.subcommand == "fit" and init.get("version") is None:
            init.version = TensorBoardLogger(init.save_dir, name=init.get("name", "default")).version
            self.new_version = True
        elif self.subcommand in ("validate", "test") and init.get("sub_dir") is None:
            init.sub_dir = self.subcommand

    def before_fit(self) -> None:
        if not self.new_version:  # a run on disk: before anything reads, clears or resumes it
            hold_run(self.trainer, create=False)
        refuse_finished_run(self.trainer, self.new_version, self.config.fit.get("ckpt_path"))
        self.check_inputs()
        if self.new_version:
            claim_run_directory(self.trainer, self.config.fit.trainer.logger.init_args)
        hold_run(self.trainer, create=True)

    def before_validate(self) -> None:
        """`grokkit validate|test --ckpt_path CKPT` logs at CKPT's step (Lightning restores it only in fit)."""
        checkpoint = self.check_inputs()
        if checkpoint is not None:
            set_step(self.trainer, checkpoint["global_step"])

    before_test = before_validate

    def after_validate(self) -> None:
        print_scores(self.trainer, self.subcommand)

    after_test = after_validate

    def check_inputs(self) -> dict | None:
        """Check the run directory, the probes and ``--ckpt_path``, then build or verify the dataset; returns
        the checkpoint."""
        logger = self.section(self.config, "trainer").get("logger")
        if isinstance(logger, Namespace) and isinstance(logger.get("init_args"), Namespace):
            check_run_directory(self.trainer, logger.init_args)
        check_probes(self.trainer.callbacks, self.model)
        path = checked_ckpt_path(self, pinned=not self.new_version)
        checkpoint = None
        if path is not None:
            checkpoint = load_checkpoint(path, self.config[self.subcommand].get("weights_only"))
            fit = self.trainer if self.subcommand == "fit" else None
            check_checkpoint(checkpoint, path, self.model, self.datamodule, fit)
        self.datamodule.setup(self.subcommand)  # raises on a corrupt dataset directory; idempotent
        return checkpoint
