"""The allowed range of every numeric setting, and the names a split setting may take, checked on the parsed
config before anything is built.

One declarative table, per class (keyed by import path, so this module imports none of them) and per
constructor argument; a class also gets the ranges of its base classes (a probe plugin inherits the
``Probe`` ones) and those it declares itself in a class attribute ``argument_ranges`` (a plugin's own). :func:`check_ranges` walks a parsed config (``class_path`` objects and lists of them
included) and refuses the first value outside its range in one line naming the key, the value and the range.
NaN and infinities are outside every range. ``None`` is left to the type (``Optional`` keys accept it).
"""

from __future__ import annotations

import importlib
from typing import Any

from jsonargparse import Namespace

from grokkit.allowed import Choice, Range, refused
from grokkit.errors import ConfigError

BILLION, TRILLION = 10**9, 10**12
SEED = Range(0, 2**32 - 1)
FRACTION = Range(0, 1)
LEVEL = Range(0, 1, low_open=True)  # an accuracy or Bridge Found level that must be reached
COUNT = Range(1, 10**6)  # evaluations in a row
STEPS = Range(1, TRILLION)
SIZE = Range(1, 65536)
DEPTH = Range(1, 4096)
BATCH = Range(1, 2**20)
EVALUATED = Choice("grokkit.data.splits.EVAL_SPLITS")  # the splits every validation scores
SCORED = Choice("grokkit.data.injection.SCORED_SPLITS")  # and the injected ones of a transfer run
TWO_HOP = Choice("grokkit.probes.logit_lens.PREFIX")  # the two-hop splits a probe can read

CLASSIFIER_THRESHOLDS = {
    **{key: LEVEL for key in ("memorized", "rise", "high", "formed", "fake_bridge_max")},
    "consecutive": COUNT,
    "late_ratio": Range(1, 10**6),
    "together_ratio": Range(1, 10**6),
    "plateau": LEVEL,
    "plateau_window": LEVEL,
}

RANGES: dict[str, dict[str, Range | Choice]] = {
    "lightning.pytorch.cli.LightningCLI": {"seed_everything": SEED},
    "grokkit.cli.app.GrokkitCLI": {"threads": Range(1, 4096, null="one per core")},
    "grokkit.data.datamodule.TwoHopDataModule": {
        "seed": SEED,
        "n_entities": Range(1, 10**6),
        "n_relations": Range(1, 10**5),
        "out_degree": Range(1, 10**5),
        "ood_fraction": FRACTION,
        "phi": Range(0, 10**4),
        "test_iid_probability": FRACTION,
        "hop1_ratio": FRACTION,
        "hop1_k": Range(0, 10**4),
        "hop2_ratio": FRACTION,
        "hop2_k": Range(0, 10**4),
        "eval_size": Range(1, 10**7),
        "ood_atomic_repeats": Range(1, 10**4),
        "batch_size": BATCH,
        "eval_batch_size": BATCH,
        "injection.n_new": Range(2, 10**6),  # and even: Injection checks that
        "injection.replay_size": Range(1, 10**7),
        "injection.eval_size": Range(1, 10**7),
    },
    "grokkit.train.module.GrokModule": {
        "lr": Range(0, 10, low_open=True),
        "betas": Range(0, 1, high_open=True),
        "weight_decay": Range(0, 100),
        "warmup_steps": Range(0, BILLION),
        "ema_decay": Range(0, 1, high_open=True, null="no EMA"),
        "eps": Range(0, 1, low_open=True),
        "label_smoothing": Range(0, 1, high_open=True),
        "nonfinite_check_every": Range(
            1, BILLION, null="every step on a CPU, every log_every_n_steps elsewhere"
        ),
    },
    "grokkit.train.grokfast.Grokfast": {"alpha": Range(0, 1, high_open=True), "lamb": Range(0, 1000)},
    "grokkit.models.decoder.Decoder": {
        "d_model": SIZE,
        "n_heads": Range(1, 1024),
        "n_layers": DEPTH,
        "n_unique_layers": Range(1, 4096, null="= n_layers"),
        "d_mlp": Range(1, 2**20, null="4 x d_model"),
        "dropout": Range(0, 1, high_open=True),
    },
    "grokkit.models.recursive.Recursive": {
        "d_model": SIZE,
        "n_blocks": Range(1, 256),
        "H_cycles": Range(1, 1024),
        "L_cycles": Range(1, 1024),
        "n_heads": Range(1, 1024),
        "expansion": Range(0, 64, low_open=True),
        "n_prefix": Range(0, 4096),
    },
    "grokkit.train.schedule.SwitchHyperparameters": {
        "threshold": Range(-(10**6), 10**6),  # a metric: an accuracy, a loss
        "weight_decay": Range(0, 100, null="unchanged"),
        "lr_scale": Range(0, 1000, low_open=True, null="unchanged"),
        "betas": Range(0, 1, high_open=True, null="unchanged"),
    },
    "grokkit.probes.base.Probe": {
        "every_n_steps": STEPS,
        "per_decade": Range(1, 1000, null="every_n_steps"),
        "sample_size": Range(1, 10**7),
        "seed": SEED,
    },
    "grokkit.probes.logit_lens.LogitLens": {"splits": TWO_HOP},
    "grokkit.probes.circuit.CircuitDetector": {
        "split": TWO_HOP,
        "threshold": FRACTION,
        "consecutive": COUNT,
        "min_causal_strength": Range(0, 1, null="not required"),
    },
    "grokkit.probes.onset.GrokkingOnset": {
        "splits": EVALUATED,
        "memorized_splits": EVALUATED,
        "stop_split": EVALUATED,
        "thresholds": LEVEL,
        "memorized": LEVEL,
        "consecutive": COUNT,
        "grokked_at": LEVEL,
        "min_ratio": Range(0, 10**6, low_open=True),
        "stop_after_steps": Range(0, TRILLION, null="never stop"),
        "stop_threshold": LEVEL,
    },
    "grokkit.probes.classifier.Thresholds": CLASSIFIER_THRESHOLDS,
    "grokkit.probes.classifier.RunClassifier": {  # a config sets them as thresholds.<key>
        "split": EVALUATED,
        "memorized_splits": EVALUATED,
        **{f"thresholds.{key}": allowed for key, allowed in CLASSIFIER_THRESHOLDS.items()},
    },
    "grokkit.probes.causal_tracing.CausalTracing": {
        "split": Choice("grokkit.probes.causal_tracing.TRACEABLE_SPLITS"),  # transfer runs' categories too
        "mid_stage": Range(1, 10**4, null="5/8 of the depth"),
    },
    "grokkit.cli.console.GrokProgressBar": {"update_seconds": Range(0, 10**6)},
    "grokkit.train.checkpointing.TrajectoryCheckpoint": {
        "per_decade": Range(1, 1000),
        "min_step": Range(0, TRILLION),
        "every_n_steps": Range(1, TRILLION, null="log-spaced only"),
        "keep_last": COUNT,
    },
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint": {
        "save_top_k": Range(-1, 10**6),
        "every_n_train_steps": Range(0, TRILLION, null="off"),
        "every_n_epochs": Range(0, BILLION, null="Lightning decides"),
    },
    "lightning.pytorch.trainer.trainer.Trainer": {
        "max_steps": Range(-1, TRILLION),
        "min_steps": Range(0, TRILLION, null="no minimum"),
        "max_epochs": Range(-1, BILLION, null="1000, or unlimited with max_steps"),
        "min_epochs": Range(0, BILLION, null="no minimum"),
        "val_check_interval": Range(0, TRILLION, low_open=True, null="once per epoch"),
        "check_val_every_n_epoch": Range(1, BILLION, null="validate by steps"),
        "log_every_n_steps": Range(1, BILLION, null="every 50 steps"),
        "num_sanity_val_steps": Range(-1, BILLION, null="2 batches"),
        "accumulate_grad_batches": Range(1, 10**6),
        "gradient_clip_val": Range(0, 10**6, null="no clipping"),
        "num_nodes": Range(1, 10**6),
        **{
            f"limit_{stage}_batches": Range(0, BILLION, null="all")
            for stage in ("train", "val", "test", "predict")
        },
        "overfit_batches": Range(0, BILLION),
        "fast_dev_run": Range(0, BILLION),
        "reload_dataloaders_every_n_epochs": Range(0, BILLION),
    },
    "lightning.pytorch.loggers.tensorboard.TensorBoardLogger": {
        "max_queue": Range(1, 10**6),
        "flush_secs": Range(0, 10**6, low_open=True),
        "purge_step": Range(0, TRILLION, null="no purge"),
        "version": Range(0, BILLION, null="the next free one"),
    },
}


def ranges_of(cls: type) -> dict[str, Range | Choice]:
    """The ranges of ``cls``'s arguments, its base classes' included (the class's own win): the table's, and
    those a class declares in its ``argument_ranges`` attribute (a probe plugin, which the table cannot list)."""
    merged: dict[str, Range | Choice] = {}
    for base in reversed(cls.__mro__):
        merged.update(RANGES.get(f"{base.__module__}.{base.__qualname__}", {}))
        merged.update(vars(base).get("argument_ranges", {}))
    return merged


def check_ranges(config: Namespace, sections: dict[str, type]) -> None:
    """Refuse the first value of ``config`` outside its range; ``sections`` maps a config key to its class
    (``""``: the top level)."""
    for key, cls in sections.items():
        values = config if key == "" else config.get(key)
        if isinstance(values, Namespace):
            _check_object(key, cls, values)


def check_arguments(path: str, cls: type, arguments: dict[str, Any]) -> None:
    """The same check on a constructor's arguments, for a class built in Python rather than from a config."""
    allowed = ranges_of(cls)
    _check_object(path, cls, Namespace(**{k: v for k, v in arguments.items() if k in allowed}))


def _check_object(path: str, cls: type, values: Namespace) -> None:
    prefix = f"{path}." if path else ""
    for key, allowed in ranges_of(cls).items():
        value = values.get(key)
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        owner = f" ({cls.__name__})" if "[" in path else ""  # a callback: name its class
        if isinstance(allowed, Choice) and isinstance(value, (list, tuple)) and not value:  # measures nothing
            raise ConfigError(
                f"{prefix}{key}=[]{owner} names no split; name at least {allowed}", prefix + key
            )
        for index, item in items:
            if refused(item, allowed):
                at = "" if index is None else f"[{index}]"
                shown, verb = (repr(item), "be") if isinstance(allowed, Choice) else (item, "lie in")
                raise ConfigError(
                    f"{prefix}{key}{at}={shown}{owner} must {verb} {allowed}", f"{prefix}{key}{at}"
                )
    for key, value in vars(values).items():
        for index, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
            at = f"{prefix}{key}" + ("" if index is None else f"[{index}]")
            if isinstance(item, Namespace) and isinstance(item.get("class_path"), str):
                target = import_class(item.class_path)
                if target is not None and isinstance(item.get("init_args"), Namespace):
                    _check_object(f"{at}.init_args", target, item.init_args)


def import_class(class_path: str) -> type | None:
    """The class a parsed ``class_path`` names (the parser has resolved and imported it already)."""
    module, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return found if isinstance(found, type) else None
