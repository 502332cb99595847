"""grokkit's exception types: each message is one line saying what is wrong and how to fix it.

``grokkit`` (``grokkit.cli.main``) prints a :class:`GrokkitError` as ``grokkit: error: <message>`` without a
traceback (``--debug`` or ``GROKKIT_DEBUG=1`` shows it) and exits with :attr:`GrokkitError.exit_code`.
"""

from __future__ import annotations

from collections.abc import Iterator


class GrokkitError(Exception):
    """Base class of the errors grokkit reports in one line."""

    exit_code = 1


class ConfigError(GrokkitError, ValueError):
    """A config value, data file, dataset directory or checkpoint that grokkit cannot use (exit code 2).

    ``keys``: the config keys whose values are at fault, if any (two for a pair that does not fit), so the CLI
    can add the config files and lines that set them.
    """

    exit_code = 2

    def __init__(self, message: str, *keys: str) -> None:
        super().__init__(message)
        self.keys = keys


class TrainingError(GrokkitError, RuntimeError):
    """A run that had to stop: a numerical fault or a failing probe (exit code 1)."""


class NonFiniteError(TrainingError):
    """The loss or a gradient became NaN or infinite (``GrokModule(nonfinite="stop")``)."""


class ProbeError(TrainingError):
    """A probe raised; the training state was saved first when a ``fit`` was running."""


class BusyError(GrokkitError):
    """Another process works in the directory a command would write (exit code 75, sysexits' EX_TEMPFAIL: retry
    once it has ended)."""

    exit_code = 75


class StorageError(GrokkitError):
    """A file could not be written (a full disk, no permission); what was written before it is intact (exit 1)."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then the exceptions it was raised from or while handling, innermost last."""
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        yield cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
