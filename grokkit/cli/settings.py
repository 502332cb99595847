"""The parsed config's checks, before anything is set or built: each number in its range, and the settings that
cannot go together."""

from __future__ import annotations

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from grokkit.cli.configfiles import as_list
from grokkit.data.injection import INJECTION_SPLITS
from grokkit.data.splits import EVAL_SPLITS
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
    ``reduce-overhead`` compile with gradient accumulation, bounds counted in epochs, and best-k checkpoints
    with nothing to rank them by."""
    check_ranges(config, sections)
    model, trainer = config.get("model") or Namespace(), config.get("trainer") or Namespace()
    refuse_epoch_bounds(trainer)
    refuse_two_filters(as_list(trainer.get("callbacks")))
    refuse_unlogged_monitors(config)
    refuse_accumulation(model.get("compile", "auto"), trainer.get("accumulate_grad_batches") or 1)
    if trainer.get("enable_checkpointing") is False:  # Lightning would refuse grokkit's own checkpoints
        raise ConfigError(
            "trainer.enable_checkpointing=false: every grokkit run keeps last.ckpt (to resume it) and a weight "
            "trajectory (for grokkit analyze); write them less often instead (checkpoint.every_n_train_steps, "
            "trajectory.per_decade)",
            "trainer.enable_checkpointing",
        )
    checkpoint = config.get("checkpoint") or Namespace()
    if checkpoint.get("dirpath") is not None:  # runs sharing one would overwrite each other's last.ckpt
        raise ConfigError(
            f"checkpoint.dirpath={checkpoint.dirpath}: a run keeps last.ckpt in RUN/checkpoints, beside its "
            "trajectory, where analyze, transfer and the other runs' checks look; leave it null",
            "checkpoint.dirpath",
        )
    top_k = checkpoint.get("save_top_k")
    if top_k not in (None, -1, 0, 1) and checkpoint.get("monitor") is None:
        raise ConfigError(
            f"checkpoint.save_top_k={top_k} keeps the best {top_k} checkpoints by checkpoint.monitor, which is "
            "null; name a logged metric (e.g. checkpoint.monitor=val/test_inferred_iid/acc with "
            "checkpoint.mode=max), or set save_top_k to 0, 1 or -1 (all)",
            "checkpoint.save_top_k",
        )


# What a setting counted in epochs does where an epoch never ends, and what to set instead
NEVER = {
    "max_steps": "the run would never stop; give a step count, or a trainer.max_time",
    "max_epochs": "it bounds nothing; bound the run with trainer.max_steps",
    "min_epochs": "the run could stop only at trainer.max_steps (GrokkingOnset's stop would be ignored); leave it null",
    "val_check_interval": "null means once an epoch, never; give a step count (e.g. 200)",
    "check_val_every_n_epoch": "the run would validate in that epoch only, never; leave it null (validations "
    "every trainer.val_check_interval steps)",
}


def refuse_epoch_bounds(trainer: Namespace) -> None:
    """grokkit draws training batches step by step, so its one epoch never ends: a bound or a validation
    counted in epochs never comes (Lightning would train on forever, or never validate, without a word)."""
    wrong = {
        "max_steps": trainer.get("max_steps") == -1 and trainer.get("max_time") is None,
        "max_epochs": trainer.get("max_epochs") not in (None, -1),
        "min_epochs": (trainer.get("min_epochs") or 0) > 0,
        "val_check_interval": "val_check_interval" in trainer and trainer.val_check_interval is None,
        "check_val_every_n_epoch": (trainer.get("check_val_every_n_epoch") or 1) > 1,
    }
    key = next((key for key, is_wrong in wrong.items() if is_wrong), None)
    if key is not None:
        raise ConfigError(
            f"trainer.{key}={trainer.get(key)}: grokkit draws training batches step by step and its epoch "
            f"never ends, so {NEVER[key]}",
            f"trainer.{key}",
        )


def refuse_two_filters(callbacks: list) -> None:
    """Grokfast's averages are one state of the run: a second filter would have no name to be saved under."""
    filters = [
        f"[{i}]" for i, c in enumerate(callbacks) if c.get("class_path") == "grokkit.train.grokfast.Grokfast"
    ]
    if len(filters) > 1:
        raise ConfigError(
            f"trainer.callbacks{' and '.join(filters)}: {len(filters)} Grokfast filters; a run takes one (keep one, "
            "with the alpha and lamb to train with)",
            "trainer.callbacks",
        )


def refuse_unlogged_monitors(config: Namespace) -> None:
    """A ``val/`` metric that ``checkpoint.monitor`` or a callback's ``monitor`` names must be one every validation
    logs: Lightning's checkpoint and SwitchHyperparameters find a misspelt one only at the first validation,
    after training (the checkpoint's error left a run without last.ckpt)."""
    data = config.get("data") or Namespace()
    splits = (*EVAL_SPLITS, *(INJECTION_SPLITS if data.get("injection") is not None else ()))
    logged = {"val/train/acc", *(f"val/{split}/{kind}" for split in splits for kind in ("acc", "loss"))}
    monitors = {"checkpoint.monitor": ((config.get("checkpoint") or Namespace()).get("monitor"), "")}
    for i, callback in enumerate(as_list((config.get("trainer") or Namespace()).get("callbacks"))):
        if isinstance(callback, Namespace) and isinstance(callback.get("init_args"), Namespace):
            owner = f" ({str(callback.get('class_path')).rpartition('.')[2]})"
            monitors[f"trainer.callbacks[{i}].init_args.monitor"] = (callback.init_args.get("monitor"), owner)
    for key, (monitor, owner) in monitors.items():
        if isinstance(monitor, str) and monitor.startswith("val/") and monitor not in logged:
            raise ConfigError(
                f"{key}={monitor!r}{owner} is not a metric a validation logs; name val/train/acc, or "
                f"val/SPLIT/acc or val/SPLIT/loss with SPLIT one of {', '.join(splits)}",
                key,
            )
