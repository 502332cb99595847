"""The parsed config's checks, before anything is set or built: each number in its range, and the settings that
cannot go together."""

from __future__ import annotations

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from grokkit.ranges import check_ranges
from grokkit.train.checkpointing import ResumableCheckpoint, TrajectoryCheckpoint
from grokkit.train.compiling import refuse_accumulation


def config_sections(cli: LightningCLI) -> dict[str, type]:
    """The class behind each section of ``cli``'s config, whose signature gives its keys' types and ranges."""
    sections = {"model": cli.model_class, "data": cli.datamodule_class, "trainer": cli.trainer_class}
    return sections | {"": type(cli), "checkpoint": ResumableCheckpoint, "trajectory": TrajectoryCheckpoint}


def check_settings(config: Namespace, sections: dict[str, type]) -> None:
    """Refuse the first value of ``config`` outside its range (``sections``: see :func:`check_ranges`), then a
    ``reduce-overhead`` compile with gradient accumulation."""
    check_ranges(config, sections)
    model, trainer = config.get("model") or Namespace(), config.get("trainer") or Namespace()
    refuse_accumulation(model.get("compile", "auto"), trainer.get("accumulate_grad_batches") or 1)
