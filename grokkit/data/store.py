"""Dataset directories: ``manifest.json`` (parameters, counts, content hash) beside ``tensors.pt``.

A directory is written under a temporary name and renamed into place, so a reader never sees half of one;
it is reused only when its manifest is complete, names the same parameters and matches the content hash.
Builders hold a lock on the data directory (:func:`build_lock`), so runs that need the same new dataset at
once build it once: the others wait and then use it. A builder killed mid-write leaves only its temporary
directory, which no run reads and the next builder deletes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from grokkit.atomic import torch_save
from grokkit.data.splits import Splits
from grokkit.errors import ConfigError, StorageError

try:
    import fcntl
except ImportError:  # Windows: no lock, builds may repeat; the rename still hides half-written ones
    fcntl = None

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


@contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Hold the exclusive build lock of ``directory``'s data directory (released when the process ends). The
    directories it creates for that are removed again if the build fails and leaves them empty (bad parameters
    write nothing)."""
    while True:
        created = list(itertools.takewhile(lambda path: not path.exists(), directory.parents))
        descriptor = locked_directory(directory.parent)
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(descriptor), os.stat(directory.parent)):
                break
        os.close(descriptor)  # a builder that failed removed the directory this one waited on: lock it anew
    try:
        yield
    except Exception:
        for path in created:  # deepest first; one that holds anything stays
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    finally:
        os.close(descriptor)


def locked_directory(data_dir: Path) -> int:
    """A descriptor of ``data_dir`` (created if missing) holding its exclusive lock, once other builders let go."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(data_dir, os.O_RDONLY)
    except OSError as error:
        raise ConfigError(
            f"data.data_dir {data_dir} cannot be created or opened ({error.strerror}); choose a writable directory",
            "data.data_dir",
        ) from None
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            rank_zero_info(f"grokkit: waiting for another process building a dataset in {data_dir}")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


def remove_leftovers(directory: Path) -> None:
    """Delete temporary directories of ``directory`` left by killed builders (call it holding the lock)."""
    for leftover in directory.parent.glob(f".{glob.escape(directory.name)}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def write_dataset(
    directory: Path, splits: Splits, params: dict[str, Any], names: dict[str, list[str]]
) -> None:
    """Write atomically: build in a sibling temporary directory, then rename it into place."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    except OSError as error:
        raise ConfigError(
            f"data.data_dir {directory.parent} is not writable ({error.strerror}); choose a writable directory",
            "data.data_dir",
        ) from None
    try:
        with open(staging / TENSORS, "wb") as file:
            torch_save(_to_tensors(splits), file)
        manifest = {
            "format": FORMAT_VERSION,
            "params": params,
            "counts": splits.counts,
            "sha256": file_sha256(staging / TENSORS),
            "vocab": names,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.replace(staging, directory)
    except OSError as error:
        if not (directory / MANIFEST).exists():  # else another process wrote the same dataset first
            raise StorageError(
                f"cannot write dataset {directory} ({error.strerror or error}); nothing of it was kept; free space in "
                f"{directory.parent} or set data.data_dir to another disk"
            ) from error
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
