"""``--ckpt_path`` checked before anything is written: a missing, unreadable or foreign checkpoint is one line."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from grokkit.cli import invocation
from grokkit.cli.locate import on_command_line
from grokkit.cli.runconfig import fork_origin
from grokkit.cli.rundir import restart_in_place
from grokkit.errors import ConfigError
from grokkit.lightning_private import last_checkpoints
from grokkit.train.checkpoint_file import read_checkpoint


def resolve_ckpt_path(trainer: L.Trainer, given: str) -> str | None:
    """The file ``--ckpt_path`` names; ``None`` where there is nothing to resume, or Lightning decides (its
    model registry). Lightning's ``best`` and ``hpc`` name checkpoints that only a process which fitted, or a
    SLURM job that was requeued, knows: refused."""
    if given == "last":  # as Lightning resolves it: the newest last*.ckpt of the checkpoint callbacks
        found = set()
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                found |= last_checkpoints(callback, trainer)
        existing = [path for path in found if os.path.isfile(path)]
        return max(existing, key=os.path.getmtime) if existing else None
    if given in ("best", "hpc"):
        raise ConfigError(
            f"--ckpt_path {given}: no such checkpoint is known to a new grokkit process; give a file "
            "(RUN/checkpoints/last.ckpt, a trajectory or best-k checkpoint) or last"
        )
    if given.startswith("registry"):
        return None
    return given


def checked_ckpt_path(cli: LightningCLI, pinned: bool) -> str | None:
    """The checkpoint file ``--ckpt_path`` names, or ``None``: Lightning decides (its registry), or the
    weights configured are used. Refused: ``validate``/``test`` with neither a checkpoint nor
    ``model.init_from`` (they would score an untrained model), and ``last`` with nothing to load, except for a
    ``pinned`` run (its own config.yaml) that stopped before its first ``last.ckpt``: that fit starts again
    from step 0 in its directory (:func:`~grokkit.cli.rundir.restart_in_place`)."""
    subcommand, config = str(cli.subcommand), cli.config[cli.subcommand]
    given = config.get("ckpt_path")
    if given is None:
        if subcommand != "fit" and not config.model.get("init_from"):
            raise ConfigError(
                f"{subcommand} needs --ckpt_path (RUN/checkpoints/last.ckpt or a trajectory checkpoint) or "
                "model.init_from: without one it would score an untrained model"
            )
        return None
    if subcommand != "fit":
        refuse_a_forks_origin(cli.trainer, str(given), subcommand)
    path = resolve_ckpt_path(cli.trainer, str(given))
    if given != "last" or path is not None:
        return path
    if subcommand == "fit" and pinned:
        # again from its start: from nothing, or a fork from the checkpoint it started from, which is read
        # before anything is cleared (it must be there)
        saved = Path(cli.trainer.log_dir or ".", "config.yaml")
        origin = fork_origin(saved)
        start = read_checkpoint(origin, f"ckpt_path {origin} (in {saved})")["global_step"] if origin else 0
        if restart_in_place(cli.trainer, start):
            # the run's config.yaml keeps it too
            cli.config[subcommand].ckpt_path = cli.config_init[subcommand].ckpt_path = origin
            return origin
    if subcommand == "fit":
        raise ConfigError(
            f"--ckpt_path last: no run to resume in {cli.trainer.log_dir} (a new run directory); give the run's "
            "own --config RUN/config.yaml, or leave --ckpt_path out to train from the start"
        )
    raise ConfigError(
        f"--ckpt_path last: the run has no last.ckpt to {subcommand}; give a checkpoint file, e.g. "
        "RUN/checkpoints/trajectory/step=00001000.ckpt"
    )


def load_checkpoint(path: str, weights_only: bool | None) -> dict:
    """The checkpoint at ``path`` (memory-mapped where it can be), or a one-line error saying why not."""
    if not os.path.isfile(path):
        what = "a directory" if os.path.isdir(path) else "no such file"
        raise ConfigError(
            f"--ckpt_path {path}: {what}; give a checkpoint written by `grokkit fit` "
            "(RUN/checkpoints/last.ckpt), or `last` to resume the run of --config RUN/config.yaml"
        )
    return read_checkpoint(path, f"--ckpt_path {path}", weights_only)


def refuse_a_forks_origin(trainer: L.Trainer, given: str, subcommand: str) -> None:
    """``validate``/``test`` with a fork's config.yaml and no ``--ckpt_path`` of their own would score the other
    run's checkpoint the fork started from (the file keeps it to rerun the fork) as if it were the fork's."""
    run_config = Path(trainer.log_dir or ".").parent / "config.yaml"  # they write into RUN/validate, RUN/test
    if not on_command_line("ckpt_path", invocation.argv) and fork_origin(run_config) == given:
        raise ConfigError(
            f"{subcommand}: ckpt_path {given} comes from {run_config}: the checkpoint that run started from, not "
            f"one of its own; give --ckpt_path, e.g. {run_config.parent / 'checkpoints' / 'last.ckpt'}"
        )
