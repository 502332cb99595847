"""One process at a time in a directory that a command writes: a run being trained, a sweep's, a study's or a
transfer's ``--out``. A second process there would clear, resume or retrain what the first is writing.

The lock is ``flock`` on the directory itself (no lock file: nothing to clean up), which the kernel drops when
the process ends, ``kill -9`` included. Locks are re-entrant within a process (a sweep locks its ``--out``
before it reads it and again before its first write, and ``grokkit study`` reports into it after its sweep)
and held until the :func:`scope` that took them ends: the command's (``grokkit``'s ``main``), or a fit's that
``build_cli`` runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from grokkit.errors import BusyError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected from each other
    fcntl = None

_held: dict[tuple[int, int], int] = {}  # (device, inode) of each directory this process locked -> descriptor


def hold(directory: Path, refusal: str) -> None:
    """Create ``directory`` if needed and lock it until the enclosing :func:`scope` ends; :class:`BusyError`
    with ``refusal`` if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return
    descriptor = os.open(directory, os.O_RDONLY)
    status = os.fstat(descriptor)
    identity = (status.st_dev, status.st_ino)
    if identity in _held:
        os.close(descriptor)
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise BusyError(refusal) from None
    _held[identity] = descriptor


def hold_if_present(directory: Path, refusal: str) -> None:
    """:func:`hold` a directory that exists; one that does not is locked when its first write creates it."""
    if directory.is_dir():
        hold(directory, refusal)


@contextmanager
def scope() -> Iterator[None]:
    """Release, at the end, the locks taken inside (those taken before stay held)."""
    before = set(_held)
    try:
        yield
    finally:
        for identity in set(_held) - before:
            os.close(_held.pop(identity))


def busy_out(directory: Path) -> str:
    """The refusal of an ``--out`` directory another grokkit command is writing."""
    return (
        f"--out {directory}: another grokkit process is running in it (it holds the directory's lock); "
        "wait for it to end, or choose another --out"
    )
