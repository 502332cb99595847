"""The package's layout: imports point down a fixed order of layers, files stay small, Lightning's private
API stays in one adapter module. Reads the source only (no training), so it runs in about a second."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grokkit

PACKAGE = Path(grokkit.__file__).parent
# Lowest first. A module may import modules of its own layer and of layers with a lower rank; layers that
# share a rank (data and models) may not import each other.
LAYERS = {
    "base": (
        0,
        (
            "grokkit.errors",
            "grokkit.atomic",
            "grokkit.locking",
            "grokkit.outputs",
            "grokkit.allowed",
            "grokkit.ranges",
            "grokkit.tokens",
            "grokkit.lightning_private",
            "grokkit.torch_private",
        ),
    ),
    "data": (1, ("grokkit.data",)),
    "models": (1, ("grokkit.models",)),
    "train": (2, ("grokkit.train",)),
    "probes": (3, ("grokkit.probes",)),
    "cli": (4, ("grokkit.cli",)),
    "results": (5, ("grokkit.results",)),
    "experiments": (6, ("grokkit.experiments",)),
    "entry": (7, ("grokkit.__main__",)),
}
LIGHTNING_ADAPTER = "grokkit.lightning_private"
TORCH_ADAPTER = "grokkit.torch_private"
MODELS_MAY_IMPORT = ("grokkit.models", "grokkit.tokens", "grokkit.errors", TORCH_ADAPTER)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The grokkit modules ``name`` imports (anywhere in the file: lazy imports are arrows too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            for alias in node.names:  # `from grokkit.data import store` imports the module grokkit.data.store
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {target for target in targets if target in known and target != name}


def layer_of(name: str) -> str:
    if name == "grokkit":  # the package's __init__: imports nothing of grokkit
        return "entry"
    for layer, (_, prefixes) in LAYERS.items():
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return layer
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS in {__file__}")


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_import_points_down_a_layer():
    wrong = []
    for name, targets in graph().items():
        layer = layer_of(name)
        for target in sorted(targets):
            other = layer_of(target)
            if other != layer and LAYERS[other][0] >= LAYERS[layer][0]:
                wrong.append(f"{name} ({layer}) imports {target} ({other})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_models_import_only_torch_its_adapter_and_the_token_layout():
    for name, targets in graph().items():
        if layer_of(name) == "models":
            assert all(t.startswith(MODELS_MAY_IMPORT) for t in targets), f"{name} imports {sorted(targets)}"


def test_files_are_small():
    too_long = []
    for name, path in modules().items():
        limit = 120 if name.startswith("grokkit.cli") else 250
        lines = len(path.read_text().splitlines())
        if lines > limit:
            too_long.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines (at most {limit})")
    assert not too_long, "\n".join(too_long)


def private_lightning_names() -> set[str]:
    """The private names (``_x``, not dunders) Lightning's own classes and modules define."""
    import lightning.pytorch as pl

    names = set()
    for path in Path(pl.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return {name for name in names if re.fullmatch(r"_[a-z]\w*", name) and not name.endswith("__")}


def test_lightning_private_names_only_in_the_adapter():
    """No attribute access ``x._name`` and no method ``def _name`` anywhere but the adapter, where ``_name`` is
    one of Lightning's private names (grokkit's own private names are fine)."""
    private = private_lightning_names()
    found = []
    for name, path in modules().items():
        if name == LIGHTNING_ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            used = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.name
                if isinstance(node, ast.FunctionDef)
                else None
            )
            if used in private:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {used}")
    assert not found, "Lightning's private names outside grokkit/lightning_private.py:\n" + "\n".join(found)


def test_torch_private_names_only_in_the_adapter():
    """No ``torch._name`` and no ``found_inf`` (the gradient scaler's protocol) anywhere but the torch adapter."""
    found = []
    for name, path in modules().items():
        if name == TORCH_ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and (
                node.attr == "found_inf"
                or (
                    isinstance(node.value, ast.Name)
                    and node.value.id == "torch"
                    and node.attr.startswith("_")
                )
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.attr}")
    assert not found, "torch's private names outside grokkit/torch_private.py:\n" + "\n".join(found)


def test_the_adapter_names_the_lightning_version_pinned():
    """The adapter says which Lightning it was checked against, and pyproject allows no later minor version."""
    import lightning

    major, minor = lightning.__version__.split(".")[:2]
    adapter = (PACKAGE / "lightning_private.py").read_text()
    assert f"Lightning {major}.{minor}." in adapter
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert f"<{major}.{int(minor) + 1}" in re.search(r'"lightning[^"]*"', pyproject).group()
