"""``grokkit sweep --config ... --grid KEY=[...]``: a grid of ``grokkit fit`` runs on Ray Tune.

Before any trial starts, the sweep resolves the ``--config`` files (and any ``fit`` flags) into one base config
(``SWEEP/base.yaml``), checks every grid key and value against ``grokkit fit``'s parser, and builds each
distinct dataset once. Ray Tune then runs the unfinished trials (:mod:`grokkit.experiments.trial`), locally on this
machine's cores or on an existing cluster (``--address``), with no pruning: during the memorization plateau
every trial lags, so a pruner would select against grokking. Started again, a sweep keeps its finished
trials and resumes the others.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from grokkit.cli.parser import ToolParser
from grokkit.errors import ConfigError, TrainingError

try:
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import FIFOScheduler
except ImportError:
    raise ConfigError("grokkit sweep needs Ray Tune: pip install 'grokkit[sweep]'") from None

from grokkit.experiments import grid
from grokkit.experiments.sweep_plan import (
    base_config,
    build_datasets,
    check_axes,
    check_flags,
    check_gpus,
    check_points,
    config_cli,
    read_configs,
)
from grokkit.experiments.sweep_record import (
    BASE,
    check_same_base,
    check_same_points,
    earlier_trials,
    named_as_earlier,
    write_plan,
)
from grokkit.experiments.trial import Trial, is_done, not_finished, run_trial
from grokkit.locking import busy_out, hold, hold_if_present
from grokkit.outputs import check_directory


class TrialLines(tune.Callback):
    """One line per trial started, finished or failed (instead of Ray Tune's tables)."""

    def __init__(self, trials: dict[str, Trial]) -> None:
        self.trials = trials

    def say(self, trial: Any, what: str) -> None:
        print(f"grokkit sweep: {trial.config['trial']} {what}", flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.say(trial, "started")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result  # unfinished: stopped by trainer.max_time
        self.say(trial, f"{result.get('status', 'done')} ({result.get('seconds', 0):.0f} s)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.say(trial, f"failed; see {self.trials[trial.config['trial']].run_dir / 'fit.log'}")


def run_on_ray(trials: list[Trial], options: argparse.Namespace, sweep_dir: Path) -> None:
    """Run ``trials`` on a local Ray instance (``options.max_concurrent`` at once), or on ``options.address``."""
    if options.address:
        try:
            ray.init(address=options.address, log_to_driver=False)
        except (ConnectionError, SystemExit):  # Ray exits after its connection attempts time out
            raise ConfigError(
                f"--address {options.address}: no Ray cluster answered; start one there (`ray start --head`) "
                "or leave --address out to run on this machine"
            ) from None
    else:
        # Ray starts its workers at niceness 15, and a trial's fit inherits it: next to any other job on the
        # machine the trials would get almost no CPU. Trials are the work here (RAY_worker_niceness overrides).
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(  # "local": a new Ray instance, even where a `ray start` cluster runs on this machine
            address="local",
            num_cpus=options.max_concurrent * options.cpus_per_trial,
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        available = ray.cluster_resources()
        for resource, need in (("CPU", options.cpus_per_trial), ("GPU", options.gpus_per_trial)):
            if need > available.get(resource, 0):
                raise ConfigError(
                    f"--{resource.lower()}s-per-trial {need:g}: the Ray cluster has {available.get(resource, 0):g} {resource}s"
                )
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # else Tune's files show as TensorBoard runs
        resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
        by_name = {trial.name: trial for trial in trials}
        trainable = tune.with_resources(tune.with_parameters(run_trial, trials=by_name), resources)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([trial.name for trial in trials])},
            tune_config=tune.TuneConfig(
                scheduler=FIFOScheduler(),  # no pruning
                max_concurrent_trials=options.max_concurrent,
                trial_dirname_creator=lambda trial: trial.trial_id,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=time.strftime("%Y%m%d-%H%M%S"),
                storage_path=str((sweep_dir / ".tune").resolve()),
                verbose=0,
                callbacks=[TrialLines(by_name), JsonLoggerCallback()],
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()


def parse_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's own options; every other ``--key value`` goes to the config, as for ``grokkit fit``."""
    parser = ToolParser(
        prog="grokkit sweep",
        description="Run a grid of `grokkit fit` runs on Ray Tune; each trial is a run directory in --out. "
        "Other --key=value flags set the config as for `grokkit fit`.",
    )
    parser.add_argument(
        "--config", action="append", required=True, help="a config file, as for grokkit fit (repeatable)"
    )
    parser.add_argument(
        "--grid", action="append", default=[], metavar="KEY=[V,...]",
        help="config key(s) and their values, e.g. data.phi=[7.2,9.0] or data.seed,seed_everything=[0,1] (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", help="the sweep directory (default runs/sweeps/<name of the last --config>)")
    parser.add_argument(
        "--cpus-per-trial", type=int,
        help="CPUs of each trial, and its torch threads (default: the config's threads, else 1)",
    )  # fmt: skip
    parser.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="GPUs of each trial; 0.25 packs four on one"
    )
    parser.add_argument(
        "--max-concurrent", type=int,
        help="trials at once (default: this machine's cores / --cpus-per-trial; on a cluster, as many as fit)",
    )  # fmt: skip
    parser.add_argument(
        "--address", help="an existing Ray cluster, e.g. auto or ray://HEAD:10001 (default: local)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check the config and grid, list the trials, stop"
    )
    options, rest = parser.parse_known_args(argv)
    below_one = [
        value for value in (options.cpus_per_trial, options.max_concurrent) if value is not None and value < 1
    ]
    if below_one or options.gpus_per_trial < 0:
        raise ConfigError(
            "--cpus-per-trial and --max-concurrent must be at least 1, --gpus-per-trial not negative"
        )
    return options, rest


def sweep(argv: list[str], trials: dict[str, dict[str, Any]] | None = None) -> Path | None:
    """The command: check everything, build the datasets, run the unfinished trials; returns the sweep dir
    (``None`` for ``--dry-run``, which lists the trials after the checks and writes nothing). ``trials``
    (name -> point), when given, are the sweep's trials instead of a grid (``grokkit study``'s regimes)."""
    options, fit_flags = parse_options(argv)
    config_args, axes = read_configs(options.config)
    axes = grid.merge(axes + grid.distinct_keys([grid.parse_flag(text) for text in options.grid], "--grid "))
    if trials is not None and axes:
        raise ConfigError(f"{axes[0].text}: a grid does not combine with given trials; leave the grid out")
    if not axes and trials is None:
        raise ConfigError(
            "no grid: give --grid KEY=[VALUE,...] or a sweep: {grid: {KEY: [...]}} section in a --config file"
        )
    sweep_dir = check_directory(
        Path(options.out or Path("runs", "sweeps", Path(options.config[-1]).stem)), "--out"
    )
    if not options.dry_run:  # before its trials and plan are read; a dry run writes nothing
        hold_if_present(sweep_dir, busy_out(sweep_dir))
    cli = config_cli([*config_args, *fit_flags])
    parser, config = cli.parser, cli.config
    check_flags(fit_flags, options.cpus_per_trial, config.get("threads"))
    options.cpus_per_trial = options.cpus_per_trial or config.get("threads") or 1
    if options.max_concurrent is None and not options.address:
        options.max_concurrent = max(1, (os.cpu_count() or 1) // options.cpus_per_trial)
    base = base_config(parser, config, sweep_dir, options.cpus_per_trial)
    check_same_base(sweep_dir, base)
    if trials is None:
        check_axes(cli, config, base, axes)
        points = grid.trial_points(axes)
    else:
        check_points(cli, config, base, trials)
        points = trials
    check_gpus(base, points, options.gpus_per_trial, local=not options.address)
    earlier = earlier_trials(sweep_dir)
    points = named_as_earlier(earlier, points)
    check_same_points(sweep_dir, earlier, points)
    if options.dry_run:
        build_datasets(base, points, write=False)
        print(f"grokkit sweep: {len(points)} trials -> {sweep_dir}", *points, sep="\n  ")
        return None
    n_datasets = build_datasets(base, points)
    hold(sweep_dir, busy_out(sweep_dir))  # before its first write
    write_plan(sweep_dir, base, {**earlier, **points})
    root = sweep_dir.resolve()  # a Ray worker runs in a directory of its own: trials need absolute paths
    trials = [
        Trial(name, point, root, root / BASE, options.cpus_per_trial, os.getcwd(), options.gpus_per_trial)
        for name, point in points.items()
    ]
    pending = [trial for trial in trials if not is_done(trial.run_dir)]
    print(
        f"grokkit sweep: {len(trials)} trials ({len(trials) - len(pending)} finished earlier, kept), "
        f"{n_datasets} datasets -> {sweep_dir}",
        flush=True,
    )
    if pending:
        run_on_ray(pending, options, sweep_dir)
    failed = [trial for trial in trials if not is_done(trial.run_dir)]
    if failed:
        raise TrainingError(not_finished(failed, len(trials)))
    print(f"grokkit sweep: all {len(trials)} trials done; grokkit.results.load_sweep({str(sweep_dir)!r})")
    return sweep_dir


def sweep_command(argv: list[str]) -> None:
    sweep(argv)
