"""How grokkit's LightningCLI builds the configured classes: the trainer with grokkit's callbacks, atomic writes
and cheap hooks, and what a constructor raises said in one line."""

from __future__ import annotations

import traceback
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback

from grokkit.cli.callbacks import quiet_batch_hooks, trainer_callbacks, trainer_plugins, trainer_profiler
from grokkit.cli.configfiles import as_list
from grokkit.errors import ConfigError, GrokkitError, causes
from grokkit.lightning_private import ConfiguredModelCLI
from grokkit.ranges import import_class


class BuildingCLI(ConfiguredModelCLI):
    """The classes a config names, built; the subclass :class:`~grokkit.cli.app.GrokkitCLI` adds the checks."""

    def section(self, config: Namespace, key: str, default: Any = None) -> Any:
        """``config[key]``, within the subcommand's part of ``config`` when there is one."""
        return config.get(str(self.subcommand), config).get(key, default)

    def instantiate_classes(self) -> None:
        """A ``trainer.callbacks`` class whose constructor refuses its arguments is one line (exit code 2)."""
        try:
            super().instantiate_classes()
        except Exception as error:
            refused = refused_callback(error, as_list(self.section(self.config, "trainer").get("callbacks")))
            if refused is None:
                raise
            raise refused from error

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The configured trainer, with grokkit's callbacks, atomic writes, cheap hooks (:mod:`grokkit.cli.callbacks`)."""
        configured = self.section(self.config_init, "trainer", default={})
        callbacks, plugins = trainer_callbacks(configured, kwargs), trainer_plugins(configured)
        trainer_profiler(configured, kwargs)
        try:
            trainer = super().instantiate_trainer(callbacks=callbacks, plugins=plugins, **kwargs)
        except (GrokkitError, MisconfigurationException):
            raise
        except Exception as error:  # e.g. an accelerator whose package is missing
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            raise ConfigError(f"trainer: {reason}; check the trainer section of the config") from error
        return quiet_batch_hooks(trainer)


def refused_callback(error: BaseException, configured: list[Namespace]) -> ConfigError | None:
    """``trainer.callbacks[i] (Class): Error: message`` for what the constructor of a configured callback raised
    (jsonargparse buries it in an error of its own); ``None`` for other errors, and for grokkit's and
    Lightning's own errors, which say where they come from already."""
    for cause in causes(error):
        owner = under_construction(cause)
        if owner is None:
            continue
        if isinstance(cause, (GrokkitError, MisconfigurationException)):
            return None
        indices = [
            i for i, item in enumerate(configured) if import_class(item.get("class_path", "")) is owner
        ]
        if not indices:
            return None
        index = next((i for i in indices if refuses(owner, configured[i])), indices[0])
        key = f"trainer.callbacks[{index}]"
        return ConfigError(
            f"{key} ({owner.__name__}): {type(cause).__name__}: {cause}; its constructor refused its init_args",
            key,
        )
    return None


def refuses(owner: type, item: Namespace) -> bool:
    """Whether ``owner``'s constructor refuses ``item``'s init_args: of several callbacks of one class, built in
    their order, the first it refuses is the one that stopped the build."""
    try:
        owner(**(item.get("init_args") or Namespace()).as_dict())
    except Exception:
        return True
    return False


def under_construction(error: BaseException) -> type | None:
    """The class of the callback whose constructor raised ``error``: the ``self`` of the first frame of its
    traceback that holds a callback (the outermost constructor, whatever base class constructor raised)."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, Callback):
            return type(owner)
    return None
