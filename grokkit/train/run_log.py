"""What every run logs besides the module's and the probes' own numbers.

* :class:`HparamsSession` fills TensorBoard's HPARAMS tab. When ``fit`` starts it writes the run's
  hyperparameters (data and regime, model family and size, optimizer, seed) as one hparams session whose
  metrics are scalars the run logs anyway: the final accuracies, ``t_mem``, ``t_gen`` and the classifier's
  label code. The tab shows each metric's latest value, so it compares runs while they train and after.
* :class:`ValidationAtProbeStep` logs validation metrics at the step probes and ``summary.json`` use.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

from grokkit.train.schedule import SwitchHyperparameters

# Scalar tags the module and the default probes log; a run without a probe shows that metric empty.
METRICS = (
    "val/train/acc",
    "val/test_inferred_iid/acc",
    "val/test_inferred_ood/acc",
    "probe/grokking/t_mem",
    "probe/grokking/t_gen/test_inferred_iid/0.9",
    "probe/grokking/t_gen/test_inferred_ood/0.9",
    "probe/classification/code",
)
Hparam = int | float | str | bool


def run_hparams(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Hparam]:
    """The numbers that tell runs apart, flat, under the names of their config keys."""
    data, net, module = trainer.datamodule, pl_module.net, dict(pl_module.hparams)
    seed = os.environ.get("PL_GLOBAL_SEED")  # set by Lightning's seed_everything
    found: dict[str, Any] = {
        "seed_everything": None if seed is None else int(seed),
        "data.seed": data.seed,
        "data.facts_file": data.facts_file,
        **{f"data.{key}": value for key, value in data.spec.__dict__.items()},
        "data.train_items": len(data.split_items("train")),
        "data.batch_size": data.batch_size,
        "model.network": type(net).__name__,
        "model.parameters": sum(parameter.numel() for parameter in net.parameters()),
        "model.stages": net.n_stages,
        "trainer.max_steps": trainer.max_steps,
        "threads": torch.get_num_threads(),  # sets the order of float sums: curves differ with it
    }
    if data.facts_file is None:
        keys = ("data.n_entities", "data.n_relations", "data.out_degree")
        found |= dict(zip(keys, data.graph_size, strict=True))
    network = module.pop("network", None)
    if isinstance(network, dict):  # as LightningCLI gives it: {class_path, init_args}
        found |= {f"model.network.{key}": value for key, value in network.get("init_args", {}).items()}
    found |= {f"model.{key}": value for key, value in module.items() if not key.startswith("_")}
    for callback in trainer.callbacks:
        if isinstance(callback, SwitchHyperparameters):
            found |= {
                "switch.threshold": callback.threshold,
                "switch.weight_decay": callback.weight_decay,
                "switch.lr_scale": callback.lr_scale,
            }
    return {key: _as_hparam(value) for key, value in found.items() if value is not None}


def _as_hparam(value: Any) -> Hparam:
    """TensorBoard takes numbers, strings and booleans: lists and tuples become their text."""
    return value if isinstance(value, (int, float, str, bool)) else str(value)


class HparamsSession(Callback):
    """Write the run's hyperparameters and the names of its key metrics for TensorBoard's HPARAMS tab."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        experiment, session_start, _ = hparams(run_hparams(trainer, pl_module), dict.fromkeys(METRICS, 0.0))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment.file_writer  # the run's own events file: metrics read from it
                writer.add_summary(experiment)
                writer.add_summary(session_start)
                writer.flush()


class ValidationAtProbeStep(Callback):
    """Validation metrics at ``trainer.global_step``, where probes and ``summary.json`` put that validation.

    During ``fit`` Lightning logs them one step earlier (it has not counted the current step yet), which
    would put the accuracies of step 200 at 199 and the probes that read them at 200.
    """

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            pl_module.log("step", float(trainer.global_step))  # Lightning's documented x-axis override
