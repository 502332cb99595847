"""A run's ``config.yaml``, as ``grokkit fit`` writes it into the run directory."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback

from grokkit.atomic import atomic_write
from grokkit.cli.configfiles import read_config_file


class RunConfig(SaveConfigCallback):
    """The run's ``config.yaml``, written atomically: the run, not this invocation of it. A fit that resumes
    the run (``--ckpt_path last``, or a checkpoint of its own) does not save its ``ckpt_path``: saved, it would
    make the file resume the run where it should train it again or be refused as a run that exists; a fork keeps
    the other run's checkpoint it started from. A fit from another run's checkpoint, and ``validate``/``test``
    (the checkpoint they scored), keep theirs."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        run_dir = Path(trainer.log_dir or ".")  # on every rank (a broadcast)
        config, ckpt_path = self.config.clone(), self.config.get("ckpt_path")
        if stage == "fit" and ckpt_path is not None and resumes(str(ckpt_path), run_dir):
            config.ckpt_path, config.weights_only = fork_origin(run_dir / self.config_filename), None
        path = run_dir / self.config_filename
        if trainer.is_global_zero:
            text = self.parser.dump(config, skip_none=False).encode()
            atomic_write(path, lambda f: f.write(text))
        self.already_saved = True


def fork_origin(path: Path) -> str | None:
    """The other run's checkpoint a fork started from, as its ``config.yaml`` at ``path`` keeps it (else None)."""
    origin = read_config_file(path).get("ckpt_path") if path.is_file() else None
    return None if origin is None or resumes(str(origin), path.parent) else str(origin)


def resumes(ckpt_path: str, run_dir: Path) -> bool:
    """Whether ``ckpt_path`` resumes the run in ``run_dir``: ``last``, or a checkpoint inside it."""
    return ckpt_path == "last" or run_dir.resolve() in Path(ckpt_path).resolve().parents
