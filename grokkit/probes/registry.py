"""Probes from installed packages, and class_path errors that say what was looked for and where.

A package ships probes by declaring entry points in the group ``grokkit.probes``, e.g. in its
``pyproject.toml``::

    [project.entry-points."grokkit.probes"]
    attention_entropy = "my_probes.entropy:AttentionEntropy"

grokkit imports them at start-up, so configs can name their classes by class name alone
(``class_path: AttentionEntropy``): jsonargparse resolves a bare name among the imported subclasses.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from importlib.metadata import entry_points
from typing import Any

GROUP = "grokkit.probes"


def load_entry_point_probes() -> dict[str, Any]:
    """Import every ``grokkit.probes`` entry point; a broken one is skipped with a warning naming it."""
    loaded = {}
    for entry in entry_points(group=GROUP):
        try:
            loaded[entry.name] = entry.load()
        except Exception as error:  # someone else's broken plugin must not stop grokkit
            warnings.warn(
                f"grokkit: skipped probe plugin {entry.name!r} = {entry.value!r} (entry point group {GROUP}): "
                f"{type(error).__name__}: {error}",
                stacklevel=2,
            )
    return loaded


def explain_class_path_error(message: str) -> str | None:
    """Turn jsonargparse's error about a class_path into one line; ``None`` for other errors."""
    found = re.search(
        r"Problem with given class_path '([^']+)':\s*(.*?)(?=\n\s*- |\n\s*Given value|$)"
        r"|Expected a dot import path string: (\S+)",
        message,
        flags=re.DOTALL,
    )
    if found is None:  # a callable-typed key (e.g. model.network) names the class_path only in its value
        value = re.search(r"Got value: Namespace\(class_path='([^']+)'", message)
        problem = why_not_importable(value.group(1)) if value else None
        key = re.search(r'Parser key "([^"]+)"', message)
        return f"{key.group(1)}: {problem}" if problem and key else problem
    class_path = found.group(1) or found.group(3)
    reason = " ".join((found.group(2) or "").split())  # why an importable class was refused: an init arg
    problem = why_not_importable(class_path) or f"class_path {class_path!r}: {reason}"
    key = re.search(r'Parser key "([^"]+)"', message)
    return f"{key.group(1)}: {problem}" if key else problem


def why_not_importable(class_path: str) -> str | None:
    """Why ``class_path`` cannot be imported, or ``None`` if it can (then the problem is elsewhere)."""
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name:
        return (
            f"unknown class {class_path!r}: a bare class name works only for grokkit's classes and those of "
            f"installed {GROUP} plugins; otherwise give the import path, e.g. plugins.weight_norm.WeightNorm"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and f"{module_name}.".startswith(f"{error.name}."):
            return (
                f"class_path {class_path!r}: no module {error.name!r} in the current directory "
                f"({os.getcwd()}) or the installed packages"
            )
        return f"class_path {class_path!r}: importing {module_name!r} failed: {error}"
    except Exception as error:  # a syntax error or a failing import inside the user's module
        return f"class_path {class_path!r}: importing {module_name!r} failed: {type(error).__name__}: {error}"
    if not hasattr(module, class_name):
        return f"class_path {class_path!r}: module {module_name!r} ({module.__file__}) has no {class_name!r}"
    return None
