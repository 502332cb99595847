"""The argument parser of every grokkit command: config errors in one line, naming the file and line at fault."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

from grokkit.cli import invocation
from grokkit.cli.locate import config_paths, located
from grokkit.probes.registry import explain_class_path_error

BASE_CLASSES = {
    "grokkit.models.TwoHopModel": "grokkit.models.Decoder",
    "lightning.Callback": "grokkit.probes.LogitLens",
}


class GrokkitParser(LightningArgumentParser):
    """Config errors in one line (jsonargparse would print the whole usage first), naming the config file and
    line that set the key at fault, and the part a config lacks."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or invocation.debug:  # jsonargparse probing alternatives, or --debug
            return super().error(message, ex)
        command = self.prog.replace(" [options]", "")
        first = invocation.argv[0] if invocation.argv else "-"
        if command == "grokkit" and not first.startswith("-"):  # found in a subcommand's config
            command = f"grokkit {first}"
        message = explain_class_path_error(message) or " ".join(message.split())
        missing = re.match(r"the following arguments are required: (?:\w+\.)?([\w.]+)", message)
        if missing:
            files = ", ".join(map(str, config_paths(invocation.argv))) or "none given"
            message = (
                f"the config lacks {missing.group(1)}, which is required (config files: {files}); e.g. "
                "model: {network: {class_path: grokkit.models.Decoder}}, or start from configs/tiny.yaml"
            )
        key = re.match(r"([\w.]+): class_path", message) or re.search(
            r"Parser key \"([^\"]+)\"|does not accept option '([^']+)'|arguments: --([\w.]+)", message
        )
        key = next(k for k in key.groups() if k) if key else None
        bases = "|".join(map(re.escape, BASE_CLASSES))
        base = re.search(rf"class_path[= ]'({bases})'", message)
        if base and key:  # jsonargparse fell back to the abstract base: the config named no class
            message = (
                f"{key}: no class_path given; name the class, e.g. class_path: {BASE_CLASSES[base.group(1)]}"
            )
        if key:
            message += located(key)
        sys.stderr.write(f"grokkit: error: {message} (see `{command} --help`)\n")
        sys.exit(2)

    def add_method_arguments(self, theclass: type, themethod: str, *args: Any, **kwargs: Any) -> list[str]:
        """``validate``/``test`` print grokkit's table (:mod:`grokkit.cli.scores`): Lightning's is off by default."""
        added = super().add_method_arguments(theclass, themethod, *args, **kwargs)
        if "verbose" in added:
            self.set_defaults(verbose=False)
        return added


class ToolParser(argparse.ArgumentParser):
    """The command line of a grokkit tool (``sweep``, ``compare``, ``analyze``, ...): a usage error is one
    line too, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"grokkit: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")
        sys.exit(2)
