"""The command line: ``grokkit fit|validate|test`` (LightningCLI) and the tools (``analyze``, ``sweep``, ...).

One job a file: :mod:`~grokkit.cli.entry` dispatches and reports errors in one line, :mod:`~grokkit.cli.factory`
builds the LightningCLI every command uses, :mod:`~grokkit.cli.app` is that LightningCLI subclass,
:mod:`~grokkit.cli.parser` its parser; config files, checkpoint checks, the run directory, the default
callbacks and the console output each have a module of their own.
"""

from grokkit.cli.app import GrokkitCLI
from grokkit.cli.commands import TOOLS, TRAINER_COMMANDS
from grokkit.cli.entry import errors_in_one_line, main
from grokkit.cli.factory import CLI_KWARGS, TRAINER_DEFAULTS, build_cli

__all__ = [
    "CLI_KWARGS",
    "TOOLS",
    "TRAINER_COMMANDS",
    "TRAINER_DEFAULTS",
    "GrokkitCLI",
    "build_cli",
    "errors_in_one_line",
    "main",
]
