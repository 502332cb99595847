"""The parsed config's checks, before anything is set or built: each number in its range, and the settings that
cannot go together."""

from __future__ import annotations

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from grokkit.errors import ConfigError
from grokkit.ranges import check_ranges
from grokkit.train.checkpointing import ResumableCheckpoint, TrajectoryCheckpoint
from grokkit.train.compiling import refuse_accumulation


def config_sections(cli: LightningCLI) -> dict[str, type]:
    """The class behind each section of ``cli``'s config, whose signature gives its keys' types and ranges."""
    sections = {"model": cli.model_class, "data": cli.datamodule_class, "trainer": cli.trainer_class}
    return sections | {"": type(cli), "checkpoint": ResumableCheckpoint, "trajectory": TrajectoryCheckpoint}


def check_settings(config: Namespace, sections: dict[str, type]) -> None:
    """Refuse the first value of ``config`` outside its range (``sections``: see :func:`check_ranges`), then a
    ``reduce-overhead`` compile with gradient accumulation, and best-k checkpoints with nothing to rank them by."""
    check_ranges(config, sections)
    model, trainer = config.get("model") or Namespace(), config.get("trainer") or Namespace()
    refuse_accumulation(model.get("compile", "auto"), trainer.get("accumulate_grad_batches") or 1)
    if trainer.get("enable_checkpointing") is False:  # Lightning would refuse grokkit's own checkpoints
        raise ConfigError(
            "trainer.enable_checkpointing=false: every grokkit run keeps last.ckpt (to resume it) and a weight "
            "trajectory (for grokkit analyze); write them less often instead (checkpoint.every_n_train_steps, "
            "trajectory.per_decade)",
            "trainer.enable_checkpointing",
        )
    checkpoint = config.get("checkpoint") or Namespace()
    top_k = checkpoint.get("save_top_k")
    if top_k not in (None, -1, 0, 1) and checkpoint.get("monitor") is None:
        raise ConfigError(
            f"checkpoint.save_top_k={top_k} keeps the best {top_k} checkpoints by checkpoint.monitor, which is "
            "null; name a logged metric (e.g. checkpoint.monitor=val/test_inferred_iid/acc with "
            "checkpoint.mode=max), or set save_top_k to 0, 1 or -1 (all)",
            "checkpoint.save_top_k",
        )
