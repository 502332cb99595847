"""Which config file and line set a key, for an error about its value; nothing where the command line set it.

The config files are the ``--config`` and ``--probes-config`` values (``analyze`` reads only the
``trainer.callbacks`` of the latter), in order: the last that sets a key set it. A key the command line sets
(``--data.phi=1``, ``--data '{phi: 1}'``, an inline ``--config '{data: {phi: 1}}'``, a ``--trainer.callbacks``
flag for any probe argument) is never located in a file.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from grokkit.cli import invocation

CONFIG_FLAGS = ("--config", "--probes-config")  # analyze's probes config is a config file too
PROBES_SECTION = "trainer.callbacks"  # the only part of a --probes-config file that is read


def config_args(argv: list[str]) -> list[tuple[str, str]]:
    """``(flag, value)`` of every ``--config`` and ``--probes-config``, in order (``FLAG V`` or ``FLAG=V``)."""
    found = []
    for arg, following in zip(argv, [*argv[1:], None][: len(argv)], strict=True):  # no arguments: none
        flag, equals, value = arg.partition("=")
        if flag in CONFIG_FLAGS and (equals or following is not None):
            found.append((flag, value if equals else str(following)))
    return found


def is_inline(value: str) -> bool:
    """Whether a ``--config`` value is YAML text rather than a file's path."""
    return any(mark in value for mark in ("\n", ": ", "{"))


def config_paths(argv: list[str]) -> list[Path]:
    """The config files the arguments name (inline YAML is none)."""
    return [Path(value) for _, value in config_args(argv) if not is_inline(value)]


def located(*keys: str) -> str:
    """`` (set in FILE, line N; ...)`` for the keys config files set (each where it was set last); ``""`` if
    the command line set any of them, since the value at fault may then be that one."""
    argv = invocation.argv
    if any(on_command_line(key, argv) for key in keys):
        return ""
    places = [place for place in (where_set(key, argv) for key in keys) if place]
    return f" (set in {'; '.join(places)})" if places else ""


def flag_name(key: str) -> str:
    """A key as a command-line flag may name it: no ``init_args`` and no list index."""
    return re.sub(r"\[\d+\]", "", key).replace(".init_args", "").rstrip("+")


def on_command_line(key: str, argv: list[str]) -> bool:
    """Whether a flag sets ``key`` or a section holding it, or an inline ``--config`` sets it."""
    name = flag_name(key)
    flags = [flag_name(arg[2:].partition("=")[0]) for arg in argv if arg.startswith("--")]
    if any(name == flag or name.startswith(f"{flag}.") for flag in flags if f"--{flag}" not in CONFIG_FLAGS):
        return True
    inline = [value for flag, value in config_args(argv) if flag == "--config" and is_inline(value)]
    return any(node_of(document(text), key) is not None for text in inline)


def where_set(key: str, argv: list[str]) -> str | None:
    """``FILE, line N`` of the last config file that sets ``key`` (``trainer.callbacks[1].init_args.x``)."""
    for flag, value in reversed(config_args(argv)):
        if is_inline(value) or (flag == "--probes-config" and not key.startswith(PROBES_SECTION)):
            continue
        try:  # from the invocation's directory: jsonargparse parses a config file from within its own
            node = node_of(document(Path(invocation.cwd, value).read_text(encoding="utf-8")), key)
        except (OSError, UnicodeDecodeError):
            continue
        if node is not None:
            return f"{value}, line {node.start_mark.line + 1}"
    return None


def document(text: str) -> yaml.Node | None:
    """The YAML document ``text`` holds, as nodes with their lines (``None`` if it is not one)."""
    try:
        return yaml.compose(text)
    except yaml.YAMLError:
        return None


def node_of(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The YAML node at ``key`` (dots and ``[i]``) under ``node``, if the document has one."""
    for part in key.replace("[", ".[").split("."):
        if isinstance(node, yaml.SequenceNode) and part.startswith("[") and part[1:-1].isdigit():
            index = int(part[1:-1])
            node = node.value[index] if index < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            node = next((value for name, value in node.value if name.value == part), None)
        else:
            return None
    return node
