"""Dataset directories: ``manifest.json`` (parameters, counts, content hash) beside ``tensors.pt``.

A directory is written under a temporary name and renamed into place, so a reader never sees half of one;
it is reused only when its manifest is complete, names the same parameters and matches the content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grokkit.data.kg import Splits
from grokkit.errors import ConfigError

FORMAT_VERSION = 1
TENSORS = "tensors.pt"
MANIFEST = "manifest.json"


def params_digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_tensors(splits: Splits) -> dict[str, torch.Tensor]:
    arrays = {
        "train": splits.train,
        "train_bridge": splits.train_bridge,
        "facts": splits.facts,
        "fact_is_ood": splits.fact_is_ood,
        **{f"eval/{name}": items for name, items in splits.evals.items()},
        **{f"eval_bridge/{name}": bridge for name, bridge in splits.eval_bridges.items()},
    }
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}


def write_dataset(
    directory: Path, splits: Splits, params: dict[str, Any], names: dict[str, list[str]]
) -> None:
    """Write atomically: build in a sibling temporary directory, then rename it into place."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        torch.save(_to_tensors(splits), staging / TENSORS)
        manifest = {
            "format": FORMAT_VERSION,
            "params": params,
            "counts": splits.counts,
            "sha256": file_sha256(staging / TENSORS),
            "vocab": names,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.replace(staging, directory)
    except OSError:
        if not (directory / MANIFEST).exists():  # else another process wrote the same dataset first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_manifest(directory: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a dataset directory, refusing one that is incomplete or built from other parameters."""
    fix = f"delete {directory} to rebuild it"
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"dataset directory {directory} has no {MANIFEST} (incomplete write?); {fix}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"dataset manifest {directory / MANIFEST} is not valid JSON; {fix}") from None
    if manifest.get("format") != FORMAT_VERSION or not {"params", "counts", "sha256"} <= manifest.keys():
        raise ConfigError(
            f"dataset manifest {directory / MANIFEST} is incomplete or of another format; {fix}"
        )
    if manifest["params"] != params:
        differing = sorted(
            k for k in params.keys() | manifest["params"].keys() if params.get(k) != manifest["params"].get(k)
        )
        raise ConfigError(
            f"dataset manifest {directory / MANIFEST} was built with other parameters ({', '.join(differing)}); {fix}"
        )
    return manifest


def load_tensors(directory: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The dataset's tensors, after checking them against the manifest's hash and counts."""
    path = directory / TENSORS
    fix = f"delete {directory} to rebuild it"
    if not path.exists():
        raise ConfigError(f"dataset file {path} is missing; {fix}")
    if file_sha256(path) != manifest["sha256"]:
        raise ConfigError(f"dataset file {path} does not match the hash in its manifest (corrupt); {fix}")
    tensors = torch.load(path, weights_only=True)
    if len(tensors["train"]) != manifest["counts"]["train"]:
        raise ConfigError(
            f"dataset file {path} has {len(tensors['train'])} training items, manifest says otherwise; {fix}"
        )
    return tensors
