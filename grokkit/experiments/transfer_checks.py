"""What ``grokkit transfer`` checks of a start before it empties the start's directory and trains it: that
the directory is a start of its own, and that the fine-tune's data are the source run's plus new facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grokkit.cli.finished_run import data_module
from grokkit.cli.matching import refuse_other_data
from grokkit.data import TwoHopDataModule
from grokkit.errors import ConfigError
from grokkit.experiments.transfer_report import FINISHED, STARTED
from grokkit.train.board import ResultsBoard
from grokkit.train.checkpoint_file import read_checkpoint

# the source's evaluation sample: neither its training data nor the injection depend on it
EVALUATION_ONLY = ("eval_size",)
SET_BY_TRANSFER = {  # each start's own: an overlay's or a flag's value would be replaced without a word
    "model.init_from": "gives each start its checkpoint (choose them with --starts)",
    "trainer.logger": "logs each start into its directory under --out",
}


def refuse_what_transfer_sets(overlays: list[dict[str, Any]], extra: tuple[str, ...]) -> None:
    """Refuse an overlay or flag that sets what each start sets itself (:data:`SET_BY_TRANSFER`)."""
    for key, what in SET_BY_TRANSFER.items():
        section, _, name = key.partition(".")
        in_overlay = any(
            isinstance(o.get(section), dict) and o[section].get(name) is not None for o in overlays
        )
        flag = f"--{key}"
        if in_overlay or any(
            arg.partition("=")[0] in (flag, f"{flag}+") or arg.startswith(f"{flag}.") for arg in extra
        ):
            raise ConfigError(f"{key}: grokkit transfer {what}; leave it out of the overlays and flags", key)


def check_start_directory(directory: Path, source: Path) -> None:
    """A start's directory is emptied before it trains: refuse one that is or holds the source run, or one
    this tool did not write (neither empty nor marked by a start's files)."""
    here, there = directory.resolve(), source.resolve()
    if here == there or here in there.parents:
        raise ConfigError(
            f"--out: {directory} would be emptied for the {directory.name} start, and it "
            f"{'is' if here == there else 'holds'} the source run {source}; give another --out"
        )
    if not directory.exists() or (directory.is_dir() and not any(directory.iterdir())):
        return
    if not ((directory / STARTED).is_file() or (directory / FINISHED).is_file() or killed_start(directory)):
        raise ConfigError(
            f"--out: {directory} would be emptied for the {directory.name} start, but grokkit transfer did not "
            f"write it (no {STARTED} or {FINISHED}); move it away, or give another --out"
        )


def killed_start(directory: Path) -> bool:
    """A start that a grokkit without the ``transfer.json`` marker began and that never finished: its
    ``last.ckpt``'s results hold the section every start publishes before it trains."""
    last = directory / "checkpoints" / "last.ckpt"
    return (
        last.is_file()
        and ResultsBoard().restore(read_checkpoint(last, str(last))).latest("transfer") is not None
    )


def trained_data(config: dict[str, Any], init_from: Path | None) -> dict[str, Any] | None:
    """The data parameters a start's weights were trained on: its checkpoint's record, or for the control, the
    source run's ``config.yaml`` (``None``: a checkpoint of an older grokkit, without the record)."""
    if init_from is None:
        return data_module(config["data"]).params
    checkpoint = read_checkpoint(init_from, str(init_from))
    return checkpoint.get(TwoHopDataModule.__qualname__, {}).get("params")


def check_start_data(data: TwoHopDataModule, trained: dict[str, Any] | None, where: str) -> None:
    """A start fine-tunes on the dataset its weights learned, with new facts added (``data.injection``): on
    another graph, split or regime the "new" facts could overwrite facts it learned, and its "old" ones be
    facts it never saw."""
    if data.injection is None:  # else it trains on the source's own data, and the table has nothing to show
        raise ConfigError(
            "data.injection is not set: a transfer fine-tunes on injected new facts; set it in the --config "
            "overlay, e.g. data: {injection: {n_new: 2000, replay_size: 8000, eval_size: 3000}}",
            "data.injection",
        )

    def kept(params: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in params.items() if key not in EVALUATION_ONLY}

    refuse_other_data(
        kept(trained) if trained is not None else None,
        kept(data.source_params),
        where,
        "a transfer fine-tunes on the source run's dataset: keep the data keys of its config.yaml, setting only "
        "data.injection, the batch sizes and data.eval_size",
    )
