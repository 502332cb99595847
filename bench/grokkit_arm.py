"""grokkit through its real CLI objects, timed against the plain loop in one fit; validations, probes, saves."""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from common import DEFAULT_CONFIG, Settings
from lightning.pytorch.callbacks import Callback
from plain_loop import PlainLoop
from step_clock import HostReadWindow, StepClock

from grokkit.cli import TRAINER_DEFAULTS, GrokkitCLI, build_cli
from grokkit.cli.console import GrokProgressBar, quiet_known_noise
from grokkit.lightning_private import TRAINING_BATCH_HOOKS, inherits_unchanged, skip_inherited_batch_hooks
from grokkit.probes import CausalTracing, CircuitDetector, GrokkingOnset, LogitLens, Probe, RunClassifier
from grokkit.probes.registry import load_entry_point_probes
from grokkit.train.checkpointing import TrajectoryCheckpoint

NOMINAL_STEPS = 20_000  # run length over which periodic costs are amortized when the config sets none
# `make bench` measures the CPU: its trainers stay there on any machine, beside the loops they are timed against
# (the GPU's step against a plain loop is `make bench-paper`'s).
ON_CPU = "--trainer.accelerator=cpu"


def load_config() -> tuple[Path, dict[str, Any], str]:
    """The default config, its content, and its name."""
    return DEFAULT_CONFIG, yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}, "configs/default.yaml"


def build_grokkit(config: Path, overrides: list[str]) -> GrokkitCLI:
    """Model, data and trainer exactly as ``grokkit fit --config`` builds them, without running."""
    load_entry_point_probes()  # plugin probes registered as entry points, as `grokkit` loads them
    quiet_known_noise()  # and without the lines `grokkit` silences
    # the host-read and anchor fits stop before their first validation on purpose
    warnings.filterwarnings(
        "ignore", message=r"trainer\.max_steps=\d+ ends the run before its first validation"
    )
    return build_cli(["--config", str(config), *overrides], run=False, save_config=False)


def hide_progress_bar(trainer: L.Trainer, update_seconds: float | None = None) -> None:
    """Swap the progress bar for one that costs the same and draws into /dev/null (updated every
    ``update_seconds``: the bar's own schedule if ``None``)."""
    for index, callback in enumerate(trainer.callbacks):
        if isinstance(callback, GrokProgressBar):
            hidden = {"file": open(os.devnull, "w"), "force_terminal": True}  # noqa: SIM115
            trainer.callbacks[index] = GrokProgressBar(
                refresh_rate=callback.refresh_rate,
                update_seconds=callback.update_seconds if update_seconds is None else update_seconds,
                console_kwargs=hidden,
            )
            skip_inherited_batch_hooks([trainer.callbacks[index]])  # as grokkit's CLI does for its own


def attach(trainer: L.Trainer, *callbacks: Callback) -> None:
    """Add the bench's timers after grokkit's callbacks, dispatched as the CLI dispatches those (inherited
    no-op batch hooks skipped), so that the timed trainer makes the calls ``grokkit fit`` makes."""
    skip_inherited_batch_hooks(list(callbacks))
    trainer.callbacks.extend(callbacks)


def default_probes() -> list[Probe]:
    """Every probe of grokkit at its default settings (used when the config lists no probe)."""
    probes = [LogitLens(), CausalTracing(), CircuitDetector(), GrokkingOnset(), RunClassifier()]
    return sorted(probes, key=lambda probe: probe.stage)


def runs_in(probe: Probe, steps: int, val_interval: int) -> int:
    """How often ``probe`` runs at its own schedule in a ``steps``-step run validating every ``val_interval``."""
    twin = copy.copy(probe)
    twin.last_run_step, runs = None, 0
    for step in range(val_interval, steps + 1, val_interval):
        if twin.is_due(step):
            twin.last_run_step, runs = step, runs + 1
    return runs


def per_step_hooks(probe: Probe) -> list[str]:
    """Callback hooks a probe overrides that run on every training step (their cost is in the step time)."""
    return [hook for hook in TRAINING_BATCH_HOOKS if not inherits_unchanged(probe, hook)]


def fit_overrides(threads: int, total: int, tmp: Path, name: str) -> list[str]:
    """A timed fit of ``total`` steps on the CPU: no time limit, and no periodic checkpoint write inside it (the
    writes are timed on their own)."""
    return [
        f"--threads={threads}",
        ON_CPU,
        f"--trainer.max_steps={total}",
        "--trainer.max_time=null",
        f"--trainer.logger.init_args.save_dir={tmp}",
        f"--trainer.logger.init_args.name={name}",
        "--trajectory.min_step=1000000000000",
        f"--checkpoint.every_n_train_steps={10 * total}",
    ]


def interleaved_clock(cli: GrokkitCLI, settings: Settings, window: int) -> StepClock:
    """A clock for ``cli``'s fit that runs a plain loop on a copy of its network, data and optimizer settings
    between grokkit's windows."""
    module, data = cli.model, cli.datamodule
    data.setup("fit")
    plain = PlainLoop.like(
        cli.trainer,
        dict(module.hparams),
        copy.deepcopy(module.net),
        data.split_items("train"),
        data.batch_size,
    )
    plain_warm = {"done": False}

    def between() -> float:
        if not plain_warm["done"]:
            plain.run(settings.warmup_steps)
            plain_warm["done"] = True
        return plain.run(window)

    return StepClock(settings.warmup_steps, window, settings.windows, between)


# A network too small to cost anything: what is left of a step is the Trainer's own work.
TINY_NETWORK = [
    "--model.network.init_args.d_model=8",
    "--model.network.init_args.n_heads=1",
    "--model.network.init_args.n_layers=2",  # the fewest that every probe can read
    "--data.batch_size=8",
]


def timed_fit(
    settings: Settings, config: Path, tmp: Path, threads: int, window: int, name: str, network: list[str]
) -> tuple[GrokkitCLI, StepClock]:
    """The config with the ``network`` overrides (:data:`TINY_NETWORK`, or none), built for a timed fit, and
    its interleaved clock (not attached)."""
    total = settings.warmup_steps + settings.windows * window
    cli = build_grokkit(config, [*fit_overrides(threads, total, tmp, name), *network])
    hide_progress_bar(cli.trainer)
    return cli, interleaved_clock(cli, settings, window)


def measure_fixed_cost(
    settings: Settings, config: Path, tmp: Path, threads: int, window: int
) -> dict[str, Any]:
    """grokkit's Trainer against the plain loop on a 2-layer, 8-wide decoder at batch 8, with the config's
    callbacks, logger and progress bar: the per-step cost that does not shrink with the model."""
    cli, clock = timed_fit(settings, config, tmp, threads, window, "bench-fixed", TINY_NETWORK)
    attach(cli.trainer, clock)  # last, so the clock sees a validation end after the probes
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return {"grokkit_s": clock.grokkit, "plain_s": clock.plain, "overrides": TINY_NETWORK}


def count_host_reads(config: Path, tmp: Path, threads: int, log_every: int) -> dict[str, Any]:
    """Host reads over one logging interval of the :data:`TINY_NETWORK` fit, with the non-finite check read
    every step as on a CPU (``cpu``) and only on logging steps as on an accelerator (``accelerator``): where a
    GPU run would wait for the host, as far as Python sees (a read inside a kernel, such as boolean indexing,
    is not counted). Each interval holds one logging step."""
    start = log_every + 2  # after the first logging step, so that the progress bar has numbers to show
    counted = {}
    for schedule, check_every in (("cpu", 1), ("accelerator", log_every)):
        overrides = [
            *fit_overrides(threads, start + log_every + 1, tmp, f"bench-reads-{schedule}"),
            *TINY_NETWORK,
        ]
        cli = build_grokkit(config, [*overrides, f"--model.nonfinite_check_every={check_every}"])
        hide_progress_bar(cli.trainer, update_seconds=0.0)  # the bar at every step: its reads, at their most
        host = HostReadWindow(start=start, steps=log_every)
        attach(cli.trainer, host)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        counted[schedule] = {
            "host_reads": dict(host.counter),
            "host_read_steps": log_every,
            "check_every": check_every,
        }
    return counted


def measure_grokkit(
    settings: Settings, config: Path, raw: dict[str, Any], tmp: Path, threads: int
) -> dict[str, Any]:
    """Grokkit vs the plain loop, interleaved in one fit; then validations, probes and checkpoint writes."""
    trainer_raw = raw.get("trainer", {}) or {}
    log_every = int(trainer_raw.get("log_every_n_steps", TRAINER_DEFAULTS["log_every_n_steps"]))
    val_interval = int(trainer_raw.get("val_check_interval", TRAINER_DEFAULTS["val_check_interval"]))
    max_steps = int(trainer_raw.get("max_steps", -1))
    nominal = max_steps if max_steps > 0 else NOMINAL_STEPS
    window = settings.window_steps or log_every
    total = settings.warmup_steps + settings.windows * window
    cli = build_grokkit(config, fit_overrides(threads, total, tmp, "bench"))
    module, data, trainer = cli.model, cli.datamodule, cli.trainer
    hide_progress_bar(trainer)
    probes = [c for c in trainer.callbacks if isinstance(c, Probe)]
    probes_source = "configured"
    if not probes:
        probes, probes_source = default_probes(), "defaults of every probe class"
        attach(trainer, *probes)

    clock = interleaved_clock(cli, settings, window)
    for probe in probes:
        clock.time_probe(probe)
    attach(trainer, clock)  # last, so the clock sees a validation end after the probes
    trainer.fit(module, datamodule=data)
    in_fit = len(clock.validations)

    for _ in range(settings.validations):  # `validate` runs every probe once, whatever its schedule
        trainer.validate(module, datamodule=data, verbose=False)

    checkpoint = {"trajectory": [], "last": []}
    for index in range(settings.validations):
        for kind, weights_only in (("trajectory", True), ("last", False)):
            start = time.perf_counter()
            trainer.save_checkpoint(tmp / f"bench-{kind}-{index}.ckpt", weights_only=weights_only)
            checkpoint[kind].append(time.perf_counter() - start)

    trajectory = TrajectoryCheckpoint(**(raw.get("trajectory") or {}))  # the configured schedule
    names = [probe.name for probe in probes]
    measured = [v for v in clock.validations if "total" in v]
    val_only = [v["total"] - sum(v.get(name, 0.0) for name in names) for v in measured]
    return {
        "grokkit_s": clock.grokkit,
        "plain_s": clock.plain,
        "window_steps": window,
        "batch_size": data.batch_size,
        "threads": torch.get_num_threads(),
        "validation_s": val_only,
        "validations_in_fit": in_fit,
        "probe_s": {name: [v[name] for v in measured if name in v] for name in names},
        "probe_runs": {probe.name: runs_in(probe, nominal, val_interval) for probe in probes},
        "probe_classes": {probe.name: type(probe).__name__ for probe in probes},
        "probe_per_step_hooks": {probe.name: per_step_hooks(probe) for probe in probes},
        "probes_source": probes_source,
        "checkpoint_s": checkpoint,
        "checkpoint_writes": {
            "trajectory": sum(
                trajectory.is_log_step(s) or trajectory.is_periodic_step(s) for s in range(1, nominal + 1)
            ),
            "last": nominal // int((raw.get("checkpoint") or {}).get("every_n_train_steps", 1000)),
        },
        "nominal_steps": nominal,
        "val_interval": val_interval,
        "log_every": log_every,
        "network": module.hparams.network,
        "activation": module.net.blocks[0].mlp.activation,  # the batch-512 models take the default's GELU
        "vocab_size": data.vocab_size,
        "item_len": data.item_len,
        "table": data.split_items("train"),
        "module_hparams": dict(module.hparams),
    }
