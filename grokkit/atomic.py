"""Atomic file writes: a reader, or a run resumed after a crash, sees the old file or the new one, never half."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write`` to a temporary sibling, flush to disk, then rename over ``path``: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        _fsync_directory(path.parent)  # the rename itself survives a power cut
    finally:
        temporary.unlink(missing_ok=True)


def replace_directory(new: Path, path: Path) -> None:
    """Put the complete directory ``new`` in the place of ``path``. The old one is moved aside and deleted only
    once the new one is in place: a crash in between leaves it whole, as ``.NAME.old`` beside it."""
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    _fsync_directory(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def torch_save(obj: Any, file: BinaryIO) -> None:
    """``torch.save`` to an open file; a failed write (a full disk) raises its ``OSError``, which torch's zip
    writer would replace with a ``RuntimeError`` of its own while closing the archive."""
    try:
        torch.save(obj, file)
    except RuntimeError as error:
        if isinstance(error.__context__, OSError):
            raise error.__context__ from None
        raise


def _remove_dead_temporaries(path: Path) -> None:
    """Delete ``.NAME.PID.tmp`` siblings left by processes killed mid-write (no such process any more)."""
    for temporary in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = temporary.name[len(path.name) + 2 : -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            temporary.unlink(missing_ok=True)
        except (PermissionError, OSError):  # alive (another user's), or cannot tell: leave it
            pass


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
