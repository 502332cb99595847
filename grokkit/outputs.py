"""Where a command writes, checked before its work starts: a wrong ``--out`` is one line, not a traceback
after the training or the drawing it was meant to keep. The checks create nothing (a ``--dry-run`` writes
nothing); the writes create the directories."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backend_bases import FigureCanvasBase

from grokkit.errors import ConfigError


def check_directory(path: Path, flag: str, given: Path | None = None) -> Path:
    """Refuse an output directory that cannot be made or written: a file in the way, or no permission.
    ``given``: the value of ``flag`` when ``path`` is the directory of a file it names."""
    given = given or path
    existing = path
    while not existing.exists():  # the nearest ancestor that exists ("." or "/" at the latest)
        existing = existing.parent
    if not existing.is_dir():
        what = "a file is in the way" if existing == given else f"{existing} is a file"
        raise ConfigError(f"{flag} {given}: {what}; give a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {given}: {existing} is not writable; choose a writable path")
    return path


# What grokkit keeps to read, resume or extend a run, a sweep or a dataset: not to be written over by an output
KEPT_FILES = ("config.yaml", "hparams.yaml", "summary.json", "manifest.json", "finished.json")
KEPT_FILES += ("sweep.json", "trial.json", "study.json", "transfer.json")


def check_file(path: Path, flag: str) -> Path:
    """Refuse an output file that is a directory, a checkpoint or another file grokkit keeps (``export --out
    RUN/checkpoints/last.ckpt`` would leave a run that cannot be resumed), or whose directory cannot be made or
    written."""
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file name inside it")
    if path.is_file() and (
        path.suffix == ".ckpt" or path.name in KEPT_FILES or path.name.startswith("events.out.tfevents")
    ):
        raise ConfigError(
            f"{flag} {path}: is a checkpoint or another file grokkit keeps for a run or sweep; writing over it "
            "would lose it: give a new file name"
        )
    check_directory(path.parent, flag, given=path)
    return path


def figure_format(path: Path, flag: str, formats: tuple[str, ...] | None = None) -> str:
    """The image format ``path``'s suffix names (as matplotlib reads it); refuses one matplotlib cannot
    write, one outside ``formats``, and a path :func:`check_file` refuses."""
    check_file(path, flag)  # first: a directory's name has no format either
    kind = path.suffix.removeprefix(".").lower()
    if kind not in (formats or FigureCanvasBase.get_supported_filetypes()):
        *others, last = [f".{name}" for name in (formats or ("png", "pdf", "svg"))]
        names = f"{', '.join(others)} or {last}" if others else last
        names += " (or another format matplotlib writes)" if formats is None else ""
        raise ConfigError(f"{flag} {path}: no figure format {kind!r}; end the name in {names}")
    return kind
