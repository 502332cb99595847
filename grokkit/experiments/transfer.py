"""``grokkit transfer --source RUN_DIR``: He et al.'s knowledge-injection experiment in one command.

From a finished run it fine-tunes three starts on the same injected data (:mod:`grokkit.data.injection`):

* ``grokked``: the run's ``last.ckpt``, once its test accuracy rose (``t_gen`` in its ``summary.json``);
* ``memorized``: the first trajectory checkpoint at or after ``t_mem`` and before the first ``t_gen``: the
  same run, memorized but not yet generalized;
* ``scratch``: the same config without ``model.init_from`` (the control).

Each start is the run's ``config.yaml`` with the overlays stacked on it (``--config``, default
``configs/transfer/cpu.yaml``) and ``model.init_from`` set, logging to ``OUT/<start>/`` (its ``config.yaml``
re-runs it with ``grokkit fit``); it is validated once at step 0, then trained. The table and the figure
(:mod:`grokkit.experiments.transfer_report`) go to ``OUT/transfer.{md,csv,png}`` and cover every start found under
``OUT``, so starts can also be run one command at a time (``--starts``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from grokkit.atomic import atomic_write
from grokkit.cli import GrokkitCLI, build_cli
from grokkit.cli.configfiles import read_config_file
from grokkit.cli.finished_run import run_config
from grokkit.cli.parser import ToolParser
from grokkit.cli.runlock import hold_run
from grokkit.data.splits import EVAL_SPLITS
from grokkit.errors import ConfigError
from grokkit.experiments.transfer_checks import (
    check_start_data,
    check_start_directory,
    refuse_what_transfer_sets,
    trained_data,
)
from grokkit.experiments.transfer_report import FINISHED, STARTED, STARTS, unfinished_starts, write_report
from grokkit.locking import busy_out, hold, hold_if_present, scope
from grokkit.outputs import check_directory
from grokkit.train.board import ResultsBoard
from grokkit.train.checkpoint_file import read_checkpoint
from grokkit.train.checkpointing import trajectory_files

DEFAULT_OVERLAY = Path(__file__).resolve().parents[2] / "configs" / "transfer" / "cpu.yaml"


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: {what}") from None
    except json.JSONDecodeError:
        raise ConfigError(f"{path} is not valid JSON: {what}") from None


def start_checkpoints(run_dir: Path, split: str, starts: tuple[str, ...]) -> dict[str, tuple[Path, int]]:
    """The checkpoints (absolute: a start's ``config.yaml`` names its checkpoint for any working directory) and
    their steps of the ``grokked`` and ``memorized`` starts among ``starts``."""
    onset = read_json(run_dir / "summary.json", "give a run of `grokkit fit` with the GrokkingOnset probe")
    grokking = onset.get("grokking") or {}
    t_gen = [t for t in ((grokking.get("t_gen") or {}).get(split) or {}).values() if t is not None]
    t_mem, summary = grokking.get("t_mem"), run_dir / "summary.json"
    if not t_gen and {"grokked", "memorized"} & set(starts):
        raise ConfigError(
            f"{summary}: the run has no t_gen for {split} (grokking section): it never generalized; train it "
            "longer, or choose another --split"
        )
    if t_mem is None and "memorized" in starts:
        raise ConfigError(
            f"{summary}: the run has no t_mem (grokking section): it never memorized, so it has no memorized "
            "start; train it longer, or leave that start out (--starts grokked,scratch)"
        )
    found: dict[str, tuple[Path, int]] = {}
    if "grokked" in starts:
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise ConfigError(f"{last} not found: the source run has no final checkpoint")
        step = read_checkpoint(last, str(last))["global_step"]
        if step < min(t_gen):
            raise ConfigError(
                f"{last} is from step {step}, before t_gen {min(t_gen)} ({split}): let the run finish"
            )
        found["grokked"] = (last.resolve(), step)
    if "memorized" in starts:
        found["memorized"] = memorized_checkpoint(run_dir, t_mem, min(t_gen), split)
    return found


def memorized_checkpoint(run_dir: Path, t_mem: int, t_gen: int, split: str) -> tuple[Path, int]:
    """The first trajectory checkpoint at or after ``t_mem`` and before ``t_gen`` (absolute), and its step."""
    if t_mem >= t_gen:  # no trajectory, however dense, holds a step in between
        raise ConfigError(
            f"{run_dir / 'summary.json'}: the run generalized (t_gen {t_gen}, {split}) no later than it memorized "
            f"(t_mem {t_mem}), so it has no memorized start; leave it out: --starts grokked,scratch"
        )
    files = trajectory_files(run_dir)
    steps = sorted(step for step in files if t_mem <= step < t_gen)
    if not steps:
        raise ConfigError(
            f"{run_dir}: no trajectory checkpoint between t_mem {t_mem} and t_gen {t_gen} ({split}): no "
            "memorized-but-not-generalized state to start from; train with a higher trajectory.per_decade"
        )
    path, step = files[steps[0]], steps[0]
    read_checkpoint(path, str(path))  # before any start trains: the start is read only when it is built
    return path.resolve(), step


def build_start(
    config: dict[str, Any], overlays: list[Path], extra: list[str], init_from: Path | None, run_dir: Path
) -> GrokkitCLI:
    """One start's CLI (model, data, trainer), logging to ``run_dir``: the checkpoint is checked here."""
    args = ["--config", yaml.safe_dump(config)]
    args += [arg for overlay in overlays for arg in ("--config", str(overlay))]
    args += [
        *extra,
        f"--model.init_from={init_from if init_from is not None else 'null'}",
        "--trainer.inference_mode=false",  # else the step-0 validation leaves inference tensors in the metrics
        "--trainer.logger=grokkit.experiments.analyze.AnalysisLogger",  # one events file: the step-0 validation does not close it
        f"--trainer.logger.init_args.save_dir={run_dir.parent}",
        f"--trainer.logger.init_args.name={run_dir.name}",
        "--trainer.logger.init_args.version=",
        "--trainer.logger.init_args.default_hp_metric=false",
    ]
    return build_cli(args, prog="grokkit transfer", run=False)


@scope()
def transfer(
    source: Path,
    out: Path,
    overlays: list[Path],
    starts: tuple[str, ...] = STARTS,
    split: str = "test_inferred_iid",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Fine-tune the starts, then write the table and figure of every start under ``out``; returns its rows."""
    refuse_what_transfer_sets([read_config_file(overlay) for overlay in overlays], extra)
    config = run_config(source)
    checkpoints = start_checkpoints(source, split, starts) if set(starts) - {"scratch"} else {}
    hold_if_present(out, busy_out(out))  # before its starts are checked
    for start in starts:
        check_start_directory(out / start, source)
    for start in starts:
        init_from, step = checkpoints.get(start, (None, None))
        cli = build_start(config, overlays, list(extra), init_from, out / start)
        check_start_data(
            cli.datamodule, trained_data(config, init_from), str(init_from or f"--source {source}")
        )
        cli.datamodule.setup("fit")  # its data refused, if they are, before anything is deleted
        hold(out, busy_out(out))
        hold_run(cli.trainer, create=False)  # a `grokkit fit` resuming the start: not deleted under it
        # a start trains afresh: no events or checkpoints of an older one stay beside it
        shutil.rmtree(out / start, ignore_errors=True)
        hold_run(cli.trainer, create=True)  # the start's new directory, as a fit holds its run's
        origin = {
            "source": str(source.resolve()),  # one run, however the command line spelled it
            "init_from": str(init_from) if init_from else None,
            "init_step": step,
            "data": cli.datamodule.params,  # the new facts: the report mixes only starts on the same ones
        }
        marker = json.dumps(origin).encode()
        atomic_write(out / start / STARTED, lambda f, text=marker: f.write(text))
        counts = {k: v for k, v in cli.datamodule.manifest["counts"].items() if k.startswith("eval_")}
        ResultsBoard.of(cli.trainer).publish("transfer", 0, {**origin, **counts})
        cli.trainer.validate(
            cli.model, datamodule=cli.datamodule, verbose=False
        )  # the start itself, at step 0
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        finished = json.dumps({"global_step": cli.trainer.global_step}).encode()
        atomic_write(out / start / FINISHED, lambda f, text=finished: f.write(text))
    return write_report(out)


def transfer_command(argv: list[str]) -> None:
    parser = ToolParser(
        prog="grokkit transfer",
        description="Fine-tune a finished run's grokked and memorized checkpoints, and a from-scratch control, on "
        "new facts; write OUT/transfer.md, .csv and .png. Other --key=value arguments go to every fit.",
    )
    parser.add_argument("--source", type=Path, required=True, help="a run directory of `grokkit fit`")
    parser.add_argument(
        "--config",
        type=Path,
        action="append",
        help=f"overlay(s) on the run's config (default {DEFAULT_OVERLAY})",
    )
    parser.add_argument("--out", type=Path, help="output directory (default SOURCE/transfer)")
    parser.add_argument(
        "--starts", default=",".join(STARTS), help=f"comma-separated subset of {','.join(STARTS)}"
    )
    parser.add_argument(
        "--split", default="test_inferred_iid", help="the split whose t_gen marks generalization"
    )
    args, extra = parser.parse_known_args(argv)
    starts = tuple(args.starts.split(","))
    if not starts or set(starts) - set(STARTS) or len(set(starts)) < len(starts):
        raise ConfigError(f"--starts {args.starts}: choose among {','.join(STARTS)}, each once")
    if args.split not in EVAL_SPLITS:
        raise ConfigError(f"--split {args.split}: no such split; choose one of {', '.join(EVAL_SPLITS)}")
    out = check_directory(args.out or args.source / "transfer", "--out")
    rows = transfer(args.source, out, args.config or [DEFAULT_OVERLAY], starts, args.split, extra)
    for start in unfinished_starts(out):
        print(
            f"grokkit transfer: {out / start} left out: its fit did not finish; rerun it with --starts {start}"
        )
    print(f"grokkit transfer: {len(rows)} starts -> {out}/transfer.md, .csv, .png")
