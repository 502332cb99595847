"""``grokkit fit|validate|test --config ...``: LightningCLI with grokkit's links, defaults and error messages.

Bad input (a config value, a data file, a dataset directory, a checkpoint) is refused before anything is
written, in one line ``grokkit: error: ...`` naming the field or file and the fix (exit code 2); a run that
has to stop (a non-finite loss, a failing probe, a full disk) says so in one line too (exit code 1).
``--debug`` (or ``GROKKIT_DEBUG=1``) shows the traceback instead. Config files are read first
(:mod:`grokkit.configfiles`), every number is checked against its range right after parsing
(:mod:`grokkit.ranges`), and a new run claims its run directory only once every input is checked.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from grokkit.checkpointing import AtomicCheckpointIO, ResumableCheckpoint, TrajectoryCheckpoint
from grokkit.configfiles import check_config_file, config_paths, where_set
from grokkit.console import GrokProgressBar, OneLineSummary, quiet_known_noise
from grokkit.data import TwoHopDataModule
from grokkit.errors import ConfigError, GrokkitError
from grokkit.module import GrokModule
from grokkit.probes import Probe
from grokkit.probes.registry import explain_class_path_error, load_entry_point_probes
from grokkit.ranges import check_ranges
from grokkit.run_log import HparamsSession, ValidationAtProbeStep
from grokkit.warm_start import state_dict_mismatch

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
# `grokkit --help` lists these, in this order. LightningCLI runs the trainer commands (its `predict` is left
# out: grokkit's models have no predict step); every other command is "module:function", called with the
# arguments after its name.
TRAINER_COMMANDS = {
    "fit": "train a model: grokkit fit --config CONFIG.yaml [--section.key value ...]",
    "validate": "evaluate a checkpoint and run every probe on it, at its step",
    "test": "evaluate a checkpoint on the evaluation splits, logged as test/...",
}
TOOLS = {
    "analyze": (
        "grokkit.analyze:analyze_command",
        "run a finished run's probes over its trajectory checkpoints",
    ),
    "export": (
        "grokkit.export:export_command",
        "write a trained decoder as a TransformerLens HookedTransformer",
    ),
    "plot": ("grokkit.plot:plot_command", "draw a run's accuracy curves as a PNG"),
    "sweep": ("grokkit.sweep:sweep_command", "run a grid of `grokkit fit` runs on Ray Tune (resumable)"),
    "compare": ("grokkit.compare:compare_command", "draw curves or a summary field across runs and sweeps"),
    "transfer": (
        "grokkit.transfer:transfer_command",
        "fine-tune a run's grokked and memorized checkpoints and a control on new facts (He et al.)",
    ),
    "study": (
        "grokkit.study:study_command",
        "He et al.'s five data regimes x seeds: a sweep, a table, a figure",
    ),
}


def overview() -> str:
    """``grokkit --help``: every subcommand in one line."""
    helps = {**TRAINER_COMMANDS, **{name: help for name, (_, help) in TOOLS.items()}}
    lines = [f"  {name:<10}{help}" for name, help in helps.items()]
    return "\n".join(
        [
            "usage: grokkit [-h] [--version] [--debug] SUBCOMMAND ...",
            "",
            "Grokking and generalization circuits in transformers on two-hop knowledge composition.",
            "",
            "subcommands (`grokkit SUBCOMMAND --help` gives each one's options):",
            *lines,
            "",
            "options:",
            "  -h, --help  show this overview and exit",
            "  --version   show grokkit's version and exit",
            f"  --debug     show tracebacks instead of one-line errors (also {DEBUG_ENV}=1)",
        ]
    )


DEBUG_ENV = "GROKKIT_DEBUG"
_debug = False  # set by main(): --debug or GROKKIT_DEBUG=1 shows tracebacks and jsonargparse's full errors
_argv: list[str] = []  # set by main(): the arguments, for the config files and keys named in errors
BASE_CLASSES = {
    "grokkit.models.TwoHopModel": "grokkit.models.Decoder",
    "lightning.Callback": "grokkit.probes.LogitLens",
}


class GrokkitParser(LightningArgumentParser):
    """Config errors in one line (jsonargparse would print the whole usage first), naming the config file and
    line that set the key at fault, and the part a config lacks."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or _debug:  # jsonargparse probing alternatives internally, or --debug
            return super().error(message, ex)
        command = self.prog.replace(" [options]", "")
        message = explain_class_path_error(message) or " ".join(message.split())
        missing = re.match(r"the following arguments are required: (?:\w+\.)?([\w.]+)", message)
        if missing:
            files = ", ".join(map(str, config_paths(_argv))) or "none given"
            message = (
                f"the config lacks {missing.group(1)}, which is required (config files: {files}); e.g. "
                "model: {network: {class_path: grokkit.models.Decoder}}, or start from configs/tiny.yaml"
            )
        key = re.match(r"([\w.]+): class_path", message) or re.search(
            r"Parser key \"([^\"]+)\"|does not accept option '([^']+)'|arguments: --([\w.]+)", message
        )
        key = next(k for k in key.groups() if k) if key else None
        bases = "|".join(map(re.escape, BASE_CLASSES))
        base = re.search(rf"class_path[= ]'({bases})'", message)
        if base and key:  # jsonargparse fell back to the abstract base: the config named no class
            message = (
                f"{key}: no class_path given; name the class, e.g. class_path: {BASE_CLASSES[base.group(1)]}"
            )
        if key:
            message += located(key)
        sys.stderr.write(f"grokkit: error: {message} (see `{command} --help`)\n")
        sys.exit(2)


def located(key: str) -> str:
    """`` (set in FILE, line N)`` for a key a config file sets and the command line does not; else ``""``."""
    if any(arg.startswith(f"--{key}") for arg in _argv):
        return ""
    where = where_set(key, config_paths(_argv))
    return f" (set in {where})" if where else ""


def set_step(trainer: L.Trainer, step: int) -> None:
    """Make ``trainer.global_step`` read ``step`` outside fit, so results of a saved checkpoint land at its step."""
    loop = trainer.fit_loop.epoch_loop
    loop.automatic_optimization.optim_progress.optimizer.step.total.completed = step  # global_step
    loop._batches_that_stepped = step  # the step Lightning logs metrics at


class GrokkitCLI(LightningCLI):
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
        subcommand = self.config.get("subcommand")
        sections = {"model": self.model_class, "data": self.datamodule_class, "trainer": self.trainer_class}
        sections |= {"": type(self), "checkpoint": ResumableCheckpoint, "trajectory": TrajectoryCheckpoint}
        try:
            check_ranges(self.config[subcommand] if subcommand else self.config, sections)
        except ConfigError as error:
            raise ConfigError(f"{error}{located(error.key or '')}", error.key) from None

    def before_instantiate_classes(self) -> None:
        """Pin the run's version in the config, so its saved config.yaml resumes into the same run directory
        (a new run claims it in :meth:`claim_run_directory`); ``validate``/``test`` of a run write into a
        ``validate``/``test`` folder inside it, not over it. Set the thread count (its range is checked)."""
        threads = self._get(self.config, "threads")
        if threads is not None:
            torch.set_num_threads(threads)
        logger = self._get(self.config, "trainer").get("logger")
        if not (isinstance(logger, Namespace) and logger.class_path.endswith("TensorBoardLogger")):
            return
        init = logger.init_args
        if self.subcommand == "fit" and init.get("version") is None:
            init.version = TensorBoardLogger(init.save_dir, name=init.get("name", "default")).version
            self.new_version = True
        elif self.subcommand in ("validate", "test") and init.get("sub_dir") is None:
            init.sub_dir = self.subcommand

    def instantiate_trainer(self, **kwargs):
        """Atomic checkpoint writes, a progress bar in steps, a one-line model summary, learning-rate and
        weight-decay curves, validation metrics at the probes' step, and the HPARAMS session, always."""
        configured = self._get(self.config_init, "trainer", default={})
        callbacks, plugins = (as_list(configured.get(key)) for key in ("callbacks", "plugins"))
        wants_bar = configured.get("enable_progress_bar") is not False
        if wants_bar and not any(isinstance(c, RichProgressBar) for c in callbacks):
            callbacks.append(GrokProgressBar(refresh_rate=50))
        if configured.get("enable_model_summary") is not False:  # Lightning's default: a table with FLOPs 0
            if not any(isinstance(c, ModelSummary) for c in callbacks):
                callbacks.append(OneLineSummary())
            kwargs["enable_model_summary"] = False  # no default summary, nor a line saying it was skipped
        if not any(isinstance(c, LearningRateMonitor) for c in callbacks):
            callbacks.append(LearningRateMonitor(logging_interval="step", log_weight_decay=True))
        callbacks.sort(key=lambda c: c.stage if isinstance(c, Probe) else 0)  # measurements before detectors
        callbacks += [ValidationAtProbeStep(), HparamsSession()]
        try:
            return super().instantiate_trainer(
                callbacks=callbacks, plugins=[*plugins, AtomicCheckpointIO()], **kwargs
            )
        except (GrokkitError, MisconfigurationException):
            raise
        except Exception as error:  # e.g. an accelerator whose package is missing
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            raise ConfigError(f"trainer: {reason}; check the trainer section of the config") from error

    def _parse_ckpt_path(self) -> None:
        """Keep the config's model: Lightning would load ``--ckpt_path FILE`` while parsing (a damaged file then
        fails with a traceback) and silently replace the model's hyperparameters with the checkpoint's, so a
        resume with a lowered ``model.lr`` would not lower it. grokkit checks the checkpoint against the
        configured model instead (:meth:`check_checkpoint`), for a file as for ``last``."""

    def before_fit(self) -> None:
        self.check_inputs()
        self.claim_run_directory()

    def claim_run_directory(self) -> None:
        """Create the new run's version directory, once every input is checked; if another run created it
        since the version was chosen, take the next one: two runs never write into the same directory."""
        logger, init = self.trainer.logger, self.config[self.subcommand].trainer.logger.init_args
        while self.new_version and isinstance(logger, TensorBoardLogger):
            try:
                os.makedirs(logger.root_dir, exist_ok=True)
                os.mkdir(logger.log_dir)
                return
            except FileExistsError:
                init.version += 1  # the saved config.yaml names the directory this run claims
                logger = self.trainer.logger = type(logger)(**init.as_dict())
            except OSError as error:
                raise ConfigError(
                    f"trainer.logger.init_args.save_dir={init.save_dir}: cannot create the run directory "
                    f"{logger.log_dir} ({error.strerror}); choose a writable directory"
                ) from None

    def before_validate(self) -> None:
        """`grokkit validate --ckpt_path CKPT` publishes at CKPT's step (Lightning restores it only in fit)."""
        checkpoint = self.check_inputs()
        if checkpoint is not None:
            set_step(self.trainer, checkpoint["global_step"])

    def before_test(self) -> None:
        self.check_inputs()

    # ----- refuse bad input before anything is written -----
    def check_inputs(self) -> dict | None:
        """Build or verify the dataset, then check ``--ckpt_path``; returns the checkpoint (memory-mapped)."""
        self.datamodule.setup(self.subcommand)  # raises on a corrupt dataset directory; idempotent
        return self.check_checkpoint()

    def resolve_ckpt_path(self, given: str) -> str | None:
        """The file ``--ckpt_path`` names; ``None`` where Lightning decides (``best``, ``hpc``, nothing to resume)."""
        if given == "last":  # as Lightning resolves it: the newest last*.ckpt of the checkpoint callbacks
            found = set()
            for callback in self.trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint):
                    found |= callback._find_last_checkpoints(self.trainer)
            existing = [path for path in found if os.path.isfile(path)]
            return max(existing, key=os.path.getmtime) if existing else None
        if given in ("best", "hpc") or given.startswith("registry"):
            return None
        return given

    def check_checkpoint(self) -> dict | None:
        """Refuse a checkpoint that is missing, unreadable, of another model, or (for fit) weights only."""
        given = self.config[self.subcommand].get("ckpt_path")
        path = self.resolve_ckpt_path(str(given)) if given else None
        if path is None:
            return None
        if not os.path.isfile(path):
            raise ConfigError(
                f"--ckpt_path {path}: no such file; give a checkpoint written by `grokkit fit` "
                "(RUN/checkpoints/last.ckpt), or `last` to resume the run of --config RUN/config.yaml"
            )
        weights_only = self.config[self.subcommand].get("weights_only")
        try:
            try:  # mmap: the shapes without reading the tensors
                checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
            except RuntimeError:  # not a zip file (an old format, or not a checkpoint): load it plainly
                checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
        except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
            first_sentence = " ".join(str(error).split()).split(". ")[0][:120]
            reason = f"{type(error).__name__}: {first_sentence}"
            if "Unsupported global" in str(error):  # a sound file holding objects a weights-only load refuses
                raise ConfigError(
                    f"--ckpt_path {path} holds Python objects that a weights-only load refuses; if you trust "
                    "the file, add --weights_only false"
                ) from None
            raise ConfigError(
                f"--ckpt_path {path} cannot be read ({reason}): it is truncated or not a checkpoint; use "
                "another one (grokkit writes checkpoints atomically, so RUN/checkpoints/last.ckpt of a crashed "
                "run is intact)"
            ) from None
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
            raise ConfigError(
                f"--ckpt_path {path} is not a Lightning checkpoint (no state_dict); give one written by "
                "`grokkit fit`"
            )
        mismatch = state_dict_mismatch(checkpoint["state_dict"], self.model.state_dict())
        if mismatch:
            raise ConfigError(
                f"--ckpt_path {path} holds a model of another shape ({mismatch}); use the config it was "
                "trained with (its run's config.yaml)"
            )
        if self.subcommand == "fit" and not {"optimizer_states", "loops"} <= checkpoint.keys():
            raise ConfigError(
                f"--ckpt_path {path} holds weights only (a trajectory checkpoint?), not a training state to "
                "resume; resume from RUN/checkpoints/last.ckpt, or evaluate it with `grokkit validate`"
            )
        return checkpoint


def as_list(value) -> list:
    """A config value that may be one item, a list, or null, as a new list."""
    return [] if value is None else list(value) if isinstance(value, list) else [value]


CLI_KWARGS = {  # how `grokkit` builds its LightningCLI
    "trainer_defaults": TRAINER_DEFAULTS,
    "save_config_kwargs": {"overwrite": True},
    "auto_configure_optimizers": False,
    "parser_class": GrokkitParser,
    "parser_kwargs": {"prog": "grokkit"},
}


def main(args: ArgsType = None) -> None:
    # `class_path: plugins.<name>.<Class>` from the repo root, nothing installed
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    load_entry_point_probes()
    quiet_known_noise()
    global _debug, _argv
    argv = sys.argv[1:] if args is None else args
    _debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if isinstance(argv, list) and "--debug" in argv:
        _debug, argv = True, [arg for arg in argv if arg != "--debug"]
        if args is None:
            sys.argv[1:] = argv  # LightningCLI reads sys.argv itself when given no args
    _argv = [str(arg) for arg in argv] if isinstance(argv, list) else []
    cli_args = None if args is None else argv
    if isinstance(argv, list) and argv[:1] in (["-h"], ["--help"], ["--version"]):
        return print(f"grokkit {version('grokkit')}" if argv[0] == "--version" else overview())
    known = [*TRAINER_COMMANDS, *TOOLS]
    if isinstance(argv, list) and (not argv or (argv[0] not in known and not argv[0].startswith("-"))):
        what = f"unknown subcommand {argv[0]!r}" if argv else "no subcommand"
        print(
            f"grokkit: error: {what}; choose one of {', '.join(known)} (see `grokkit --help`)",
            file=sys.stderr,
        )
        sys.exit(2)
    with errors_in_one_line():
        for path in config_paths(_argv):
            check_config_file(path)
        if isinstance(argv, list) and argv[0] in TOOLS:  # imported when used: some build on GrokkitCLI
            module, _, function = TOOLS[argv[0]][0].partition(":")
            return getattr(importlib.import_module(module), function)(argv[1:])
        GrokkitCLI(GrokModule, TwoHopDataModule, **CLI_KWARGS, args=cli_args)


@contextmanager
def errors_in_one_line() -> Iterator[None]:
    """A grokkit error (possibly wrapped by jsonargparse while instantiating a class) or Lightning's
    misconfiguration error becomes one line on stderr and its exit code; anything else keeps its traceback."""
    try:
        yield
    except Exception as error:
        cause = _one_line_cause(error)
        if cause is None or _debug:
            raise
        message = " ".join(str(cause).split())
        if isinstance(cause, MisconfigurationException):
            message = f"{message} (a Lightning setting: see the trainer and checkpoint sections)"
        print(f"grokkit: error: {message}", file=sys.stderr)
        sys.exit(getattr(cause, "exit_code", 2))


def _one_line_cause(error: BaseException) -> BaseException | None:
    """The grokkit error (or Lightning's misconfiguration error) behind ``error``, if any."""
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (GrokkitError, MisconfigurationException)):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


if __name__ == "__main__":
    main()
