"""Config files, read before the parser sees them: every problem names the file, and the line where YAML knows it.

jsonargparse reports a syntax error without the file's name and an empty file as "Unexpected config"; here
each ``--config`` (and ``--probes-config``) file is read first (missing, unreadable, not YAML, empty, not a
mapping of sections); :mod:`grokkit.cli.locate` finds the file and line that set a key, for errors about its value.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from grokkit.errors import ConfigError

EXAMPLE = "a mapping of sections (model, data, trainer, ...), e.g. configs/tiny.yaml"
# the sections holding a class's arguments: anything but a mapping (or a file's name) fails deep in the build
CLASS_SECTIONS = ("model", "data", "trainer", "checkpoint", "trajectory")


def read_config_file(path: Path) -> dict:
    """The mapping in a config file; a file that is missing, unreadable, not valid YAML, empty, or not a
    mapping is refused in one line."""
    if not path.exists():
        raise ConfigError(
            f"config file {path} does not exist; give the path of a YAML config, e.g. configs/tiny.yaml"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; give a YAML config") from None
    except OSError as error:  # a directory, no permission
        raise ConfigError(
            f"config file {path} cannot be read ({error.strerror}); give a readable YAML file"
        ) from None
    try:
        content = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        context = f" {error.context}" if error.context else ""
        raise ConfigError(
            f"config file {path}, line {mark.line + 1}, column {mark.column + 1}: invalid YAML ({error.problem}"
            f"{context}); fix the syntax there"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path}: invalid YAML ({' '.join(str(error).split())})") from None
    document = yaml.compose(text)
    if (repeated := _repeated_key(document, set())) is not None:
        key, first, line = repeated
        raise ConfigError(
            f"config file {path}, line {line}: key {key!r} repeats line {first}, and YAML would keep only the "
            "second; merge the two"
        )
    if content is None:
        raise ConfigError(f"config file {path} is empty (or only comments); a config is {EXAMPLE}")
    if not isinstance(content, dict):
        raise ConfigError(
            f"config file {path} holds a {type(content).__name__} at the top; a config is {EXAMPLE}"
        )
    for name, _ in document.value:  # a string is a section's own YAML file, which jsonargparse reads
        if name.value in CLASS_SECTIONS and not isinstance(content[name.value], (dict, str)):
            what = "is empty" if content[name.value] is None else f"holds {content[name.value]!r}"
            raise ConfigError(
                f"config file {path}, line {name.start_mark.line + 1}: section {name.value!r} {what}; a section "
                f"is a mapping of its keys (e.g. data: {{phi: 9.0}}, or its keys indented below it); give them, "
                "or delete the line"
            )
    return content


def _repeated_key(node: yaml.Node | None, seen: set[int]) -> tuple[str, int, int] | None:
    """The first key a mapping in ``node`` gives twice, with both lines (``seen``: nodes walked; aliases share)."""
    if node is None or id(node) in seen:
        return None
    seen.add(id(node))
    children = node.value if isinstance(node, yaml.SequenceNode) else []
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}  # by type and text: 1 and '1' are two keys
        for name, value in node.value:
            if isinstance(name, yaml.ScalarNode) and name.value != "<<":
                if (name.tag, name.value) in lines:
                    return name.value, lines[name.tag, name.value], name.start_mark.line + 1
                lines[name.tag, name.value] = name.start_mark.line + 1
            children.append(value)
    return next(filter(None, (_repeated_key(child, seen) for child in children)), None)


def class_name(entry: object) -> str:
    """The class a config entry names (``{class_path: ..., init_args: ...}`` or a class path alone), without
    its module: ``GrokkingOnset`` for ``grokkit.probes.GrokkingOnset``; empty where it names none."""
    path = (entry.get("class_path") or "") if isinstance(entry, dict) else str(entry)
    return path.rpartition(".")[2]


def as_list(value: object) -> list:
    """A config value that may be one item, a list, or null, as a new list."""
    return [] if value is None else list(value) if isinstance(value, list) else [value]
