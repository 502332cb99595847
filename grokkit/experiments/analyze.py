"""``grokkit analyze RUN_DIR``: run a run's probes afterwards, over its saved trajectory of weights.

Training saves the weights at log-spaced steps (``checkpoints/trajectory/step=XXXXXXXX.ckpt``) and at the
end (``checkpoints/last.ckpt``), so probes too costly to run live (or thought of later) can still trace the
whole run. This rebuilds the run from its ``config.yaml``, then, checkpoint by checkpoint in step order,
loads the weights and runs one validation at that checkpoint's step: the module publishes the accuracies
and every probe runs, as it would have live. Results go to ``RUN_DIR/analysis/`` (``summary.json`` and
TensorBoard events; ``--name`` picks another folder, so that analyses sit side by side), replacing an earlier
analysis of that name once the new one is complete (one analysis of a name at a time); the run's own files
are not touched. Probes in ``--probes-config EXTRA.yaml`` (a ``trainer.callbacks`` list) are added, or
replace the run's probe of the same class, e.g. to re-run the onset with other thresholds.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger

from grokkit.atomic import replace_directory
from grokkit.cli import GrokkitCLI, build_cli
from grokkit.cli.configfiles import as_list, class_name, read_config_file
from grokkit.cli.finished_run import run_config, run_dir_parser
from grokkit.errors import ConfigError
from grokkit.lightning_private import set_step
from grokkit.locking import hold, scope
from grokkit.probes.base import check_probes
from grokkit.train.board import ResultsBoard
from grokkit.train.checkpoint_file import read_checkpoint
from grokkit.train.checkpointing import trajectory_files

RUN_FOLDERS = ("checkpoints", "figures", "validate", "test", "transfer")  # what a run holds already


class AnalysisLogger(TensorBoardLogger):
    """One events file for the whole analysis. Lightning closes the writer after every ``validate``, and
    the reopened files of one second sort out of step order (``.10`` before ``.9``), which TensorBoard reads
    as a restart and drops points."""

    def finalize(self, status: str) -> None:
        self.experiment.flush()


def offline_config(run_dir: Path, probes_config: Path | None, name: str = "analysis") -> dict[str, Any]:
    """The run's config logging to ``RUN_DIR/name``, with the extra probes (replacing any of the same class)."""
    config = run_config(run_dir)
    config["model"]["init_from"] = None  # each checkpoint brings its own weights: the file need not exist
    extra = read_config_file(probes_config) if probes_config is not None else {}
    added = as_list((extra.get("trainer") or {}).get("callbacks"))
    if probes_config is not None and not added:
        raise ConfigError(
            f"--probes-config {probes_config} lists no trainer.callbacks, the only section read from it; "
            "e.g. trainer: {callbacks: [{class_path: grokkit.probes.LogitLens}]}"
        )
    trainer = config.setdefault("trainer", {})
    replaced = {class_name(callback) for callback in added}
    kept = [
        callback for callback in as_list(trainer.get("callbacks")) if class_name(callback) not in replaced
    ]
    # the added first, so that an error names a probe by its index in the probes config (and its line there);
    # the CLI orders probes by stage, measurements before the detectors reading them
    trainer["callbacks"] = added + kept
    trainer["logger"] = {
        "class_path": "grokkit.experiments.analyze.AnalysisLogger",
        "init_args": {
            "save_dir": str(run_dir),
            "name": name,
            "version": "",
            "default_hp_metric": False,
        },
    }
    return config


def analyze(run_dir: Path, probes_config: Path | None = None, name: str = "analysis") -> dict[str, Any]:
    """Run the probes over every checkpoint of the run; returns the summary written to ``name/summary.json``.

    The results are computed into ``.NAME.partial`` and replace an earlier ``NAME`` only once complete: a probe
    that fails leaves the earlier analysis as it was."""
    # "" names the run directory itself, which the finished analysis would replace
    if Path(name).name != name or name in ("", ".", "..", *RUN_FOLDERS) or (run_dir / name).is_file():
        raise ConfigError(
            f"--name {name!r}: give the name of a new folder of the run, e.g. analysis-answered (not one of "
            f"{', '.join(RUN_FOLDERS)}, nor a path)"
        )
    staging = run_dir / f".{name}.partial"
    config = offline_config(run_dir, probes_config, staging.name)
    paths = [path for _, path in sorted(trajectory_files(run_dir).items())]  # in step order
    paths += [path for path in [run_dir / "checkpoints" / "last.ckpt"] if path.is_file()]
    if not paths:
        raise ConfigError(
            f"no checkpoints under {run_dir / 'checkpoints'}: nothing to analyze; give a run that reached its "
            "first trajectory checkpoint (trajectory.min_step)"
        )
    # every checkpoint read (memory-mapped) before any work, so that a damaged one is refused first
    checkpoints = [read_checkpoint(path, str(path)) for path in paths]
    checkpoints.sort(key=lambda checkpoint: checkpoint["global_step"])  # a killed run's last.ckpt: older
    cli = build_cli(config, prog="grokkit analyze", run=False, save_config=False)  # refuses bad probes first
    check_probes(cli.trainer.callbacks, cli.model)  # and settings the run's model cannot run
    with scope():
        claim_staging(
            staging,
            f"{run_dir}: another grokkit analyze --name {name} is computing there (it holds {staging.name}'s "
            "lock); wait for it to end, or give another --name",
        )
        try:
            summary = run_probes(cli, checkpoints, run_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        replace_directory(staging, run_dir / name)
    return summary


def claim_staging(staging: Path, refusal: str) -> None:
    """Lock ``staging``, then empty it of what a killed analysis left. Another analysis of the name computing
    there is refused (:class:`BusyError` with ``refusal``): clearing would delete its files, and each would then
    replace the other's analysis with a mixture of both."""
    hold(staging, refusal)
    for leftover in staging.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()


def run_probes(cli: GrokkitCLI, checkpoints: list[dict[str, Any]], run_dir: Path) -> dict[str, Any]:
    """One validation per checkpoint, at its step, in step order; returns the summary."""
    trainer, module = cli.trainer, cli.model
    steps: list[int] = []
    for checkpoint in checkpoints:
        step = checkpoint["global_step"]
        if step in steps:  # last.ckpt can repeat the last trajectory step
            continue
        module.load_state_dict(checkpoint["state_dict"])
        set_step(trainer, step)  # the module and the probes publish at trainer.global_step
        trainer.validate(module, datamodule=cli.datamodule, verbose=False)
        steps.append(step)
    board = ResultsBoard.of(trainer)
    board.publish("analysis", steps[-1], {"run_dir": str(run_dir), "steps": steps})
    trainer.logger.experiment.close()
    return board.summary()


def analyze_command(argv: list[str]) -> None:
    parser = run_dir_parser(
        "analyze",
        "Run a finished run's probes over its trajectory checkpoints; results in RUN_DIR/analysis/ (--name).",
    )
    parser.add_argument(
        "--probes-config",
        type=Path,
        help="a YAML config whose trainer.callbacks list adds probes (replacing the run's of the same class)",
    )
    parser.add_argument(
        "--name",
        default="analysis",
        help="the run's folder to write (default analysis; replaced if it exists)",
    )
    args = parser.parse_args(argv)
    summary = analyze(args.run_dir, args.probes_config, args.name)
    steps = summary["analysis"]["steps"]
    checkpoints = f"{len(steps)} checkpoint{'s' if len(steps) != 1 else ''}"
    print(f"grokkit analyze: {checkpoints}, steps {steps[0]}-{steps[-1]} -> {args.run_dir / args.name}")
