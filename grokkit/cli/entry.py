"""``grokkit SUBCOMMAND ...``: dispatch to LightningCLI or a tool, with every error in one line.

Bad input (a config value, a data file, a dataset directory, a checkpoint) is refused before anything is
written, in one line ``grokkit: error: ...`` naming the field or file and the fix (exit code 2); a run that
has to stop (a non-finite loss, a failing probe, a full disk) says so in one line too (exit code 1), a
directory another grokkit process works in is refused with 75 (try again once it has ended), and a run stopped
by SIGTERM exits with 143, as a process killed by it would.
``--debug`` (or ``GROKKIT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import ArgsType
from lightning.pytorch.utilities.exceptions import SIGTERMException

from grokkit.cli import invocation
from grokkit.cli.commands import TOOLS, TRAINER_COMMANDS, overview
from grokkit.cli.configfiles import read_config_file
from grokkit.cli.console import quiet_known_noise
from grokkit.cli.factory import build_cli
from grokkit.cli.locate import config_paths, located
from grokkit.errors import ConfigError, GrokkitError, causes
from grokkit.locking import scope
from grokkit.probes.registry import load_entry_point_probes


def main(args: ArgsType = None) -> None:
    """``grokkit ...``; the invocation state (``--debug``, the arguments) and the directory locks do not outlive
    the call."""
    try:
        with scope():
            run_command(args)
    finally:
        invocation.debug, invocation.argv, invocation.cwd = False, [], ""


def run_command(args: ArgsType) -> None:
    # `class_path: plugins.<name>.<Class>` from the repo root, nothing installed
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    load_entry_point_probes()
    quiet_known_noise()
    argv = sys.argv[1:] if args is None else args
    invocation.debug = os.environ.get(invocation.DEBUG_ENV, "") not in ("", "0")
    if isinstance(argv, list) and "--debug" in argv:
        invocation.debug, argv = True, [arg for arg in argv if arg != "--debug"]
        if args is None:
            sys.argv[1:] = argv  # LightningCLI reads sys.argv itself when given no args
    invocation.argv = [str(arg) for arg in argv] if isinstance(argv, list) else []
    invocation.cwd = os.getcwd()
    if isinstance(argv, list) and argv[:1] in (["-h"], ["--help"], ["--version"]):
        return print(f"grokkit {version('grokkit')}" if argv[0] == "--version" else overview())
    known = [*TRAINER_COMMANDS, *TOOLS]
    if isinstance(argv, list) and (not argv or (argv[0] not in known and not argv[0].startswith("-"))):
        what = f"unknown subcommand {argv[0]!r}" if argv else "no subcommand"
        print(
            f"grokkit: error: {what}; choose one of {', '.join(known)} (see `grokkit --help`)",
            file=sys.stderr,
        )
        sys.exit(2)
    with errors_in_one_line():
        for path in config_paths(invocation.argv):
            read_config_file(path)
        if isinstance(argv, list) and argv[0] in TOOLS:  # imported when used: some need optional packages
            module, _, function = TOOLS[argv[0]][0].partition(":")
            return getattr(importlib.import_module(module), function)(argv[1:])
        try:
            build_cli(None if args is None else argv)
        # Lightning's SIGTERMException is a SystemExit of status 0: a scheduler would see a finished run
        except SIGTERMException:
            print("grokkit: stopped by SIGTERM; resume with --ckpt_path last", file=sys.stderr)
            sys.exit(128 + signal.SIGTERM)


@contextmanager
def errors_in_one_line() -> Iterator[None]:
    """A grokkit error (possibly wrapped by jsonargparse while instantiating a class) or Lightning's
    misconfiguration error becomes one line on stderr and its exit code, a config error with the file and
    line that set its key; anything else keeps its traceback."""
    try:
        yield
    except Exception as error:
        cause = one_line_cause(error)
        if cause is None or invocation.debug:
            raise
        message = " ".join(str(cause).split())
        if isinstance(cause, ConfigError):  # the config file and line that set its keys, if files did
            message += located(*cause.keys)
        if isinstance(cause, MisconfigurationException):
            message = f"{message} (a Lightning setting: see the trainer and checkpoint sections)"
        print(f"grokkit: error: {message}", file=sys.stderr)
        sys.exit(getattr(cause, "exit_code", 2))


def one_line_cause(error: BaseException) -> BaseException | None:
    """The grokkit error (or Lightning's misconfiguration error) behind ``error``, if any."""
    return next((c for c in causes(error) if isinstance(c, (GrokkitError, MisconfigurationException))), None)
