"""A run's ``config.yaml``, as ``grokkit fit`` writes it into the run directory."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback

from grokkit.atomic import atomic_write


class RunConfig(SaveConfigCallback):
    """The run's ``config.yaml``: the run, not this invocation of it. Without ``ckpt_path`` and ``weights_only``
    (a resume's ``--ckpt_path last`` saved there would make the file resume the run, where it should train it
    again or be refused as a run that exists), and written atomically."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        config = self.config.clone()
        for key in ("ckpt_path", "weights_only"):
            if key in config:
                config[key] = None
        path = Path(trainer.log_dir or ".") / self.config_filename  # log_dir: on every rank (a broadcast)
        if trainer.is_global_zero:
            text = self.parser.dump(config, skip_none=False).encode()
            atomic_write(path, lambda f: f.write(text))
        self.already_saved = True
