"""A checkpoint against the run configured to load it: the same model; to resume a fit, a training state of the
same optimizer groups, and, resuming the run itself, of the same data."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from grokkit.cli.runconfig import resumes
from grokkit.errors import ConfigError
from grokkit.train.schedule import SwitchHyperparameters
from grokkit.train.warm_start import state_dict_mismatch


def check_checkpoint(
    checkpoint: dict, path: str, model: L.LightningModule, data: L.LightningDataModule, fit: L.Trainer | None
) -> None:
    """Refuse a checkpoint of another model, or, for a ``fit`` (its trainer), one holding weights only or other
    optimizer groups, one past ``trainer.max_steps``, one whose fired switch the fit's switches no longer hold,
    or, resuming the fit's own run (``last`` or a checkpoint inside it), one of another dataset."""
    mismatch = state_dict_mismatch(checkpoint["state_dict"], model.state_dict())
    if mismatch:
        raise ConfigError(
            f"--ckpt_path {path} holds a model of another shape ({mismatch}); use the config it was "
            "trained with (its run's config.yaml)"
        )
    if fit is None:
        return
    if not {"optimizer_states", "loops"} <= checkpoint.keys():
        raise ConfigError(
            f"--ckpt_path {path} holds weights only (a trajectory checkpoint?), not a training state to "
            "resume; resume from RUN/checkpoints/last.ckpt, or evaluate it with `grokkit validate`"
        )
    trained, configured = checkpoint.get("hyper_parameters", {}).get("decay"), model.hparams
    if trained is not None and configured.get("decay", trained) != trained:
        raise ConfigError(
            f"model.decay={configured['decay']}: --ckpt_path {path} was trained with decay {trained}, whose "
            f"optimizer groups hold other parameters; resume with model.decay={trained}",
            "model.decay",
        )
    if -1 < fit.max_steps < checkpoint["global_step"]:  # it would train nothing, its config.yaml saying less
        raise ConfigError(
            f"trainer.max_steps={fit.max_steps}: --ckpt_path {path} is at step {checkpoint['global_step']} "
            "already; give a larger trainer.max_steps to train on",
            "trainer.max_steps",
        )
    refuse_a_changed_fired_switch(checkpoint.get("callbacks", {}), fit, path)
    if resumes(path, Path(fit.log_dir or ".")):
        refuse_other_data(
            checkpoint.get(type(data).__qualname__, {}).get("params"),
            data.params,
            f"--ckpt_path {path}",
            "resume with the run's data settings, or start a new run from it: "
            "--trainer.logger.init_args.version=null",
        )


def refuse_other_data(trained: dict | None, configured: dict, where: str, fix: str) -> None:
    """Weights trained on one dataset and trained on with another: a run resumed on another dataset would be
    two runs' halves under one config.yaml, a transfer would fine-tune on a graph its start never learned (a
    checkpoint of an older grokkit, without the record, is not checked). ``where`` names the checkpoint."""
    if trained is None:
        return
    changed = sorted(
        key for key in trained.keys() | configured.keys() if trained.get(key) != configured.get(key)
    )
    if changed:
        was = ", ".join(f"data.{key}={trained.get(key)}" for key in changed)
        raise ConfigError(
            f"{where} was trained on another dataset ({was} there); {fix}",
            *(f"data.{key}" for key in changed),
        )


def refuse_a_changed_fired_switch(states: dict, fit: L.Trainer, path: str) -> None:
    """A switch's monitor and threshold name its state: changed, the fired switch's state would be left
    unread and the new one fire again, scaling a learning rate already scaled (a new switch beside the fired
    one is fine)."""
    switches = [callback for callback in fit.callbacks if isinstance(callback, SwitchHyperparameters)]
    kept = {switch.state_key for switch in switches}
    fired = {
        key: state["fired_at_step"]
        for key, state in states.items()
        if key.startswith(SwitchHyperparameters.__qualname__ + "{")
        and key not in kept
        and state.get("fired_at_step") is not None
    }
    new = [switch for switch in switches if switch.state_key not in states]
    if fired and new:
        key, step = next(iter(fired.items()))
        raise ConfigError(
            f"trainer.callbacks: SwitchHyperparameters(monitor={new[0].monitor!r}, threshold="
            f"{new[0].threshold}) is not in --ckpt_path {path}, whose switch {key} fired at step {step}; "
            "resumed, it would fire again on top of it: keep that switch's monitor and threshold (its state "
            "loads and it does not fire again), adding any new switch beside it",
            "trainer.callbacks",
        )
