"""Disk use and atomic writes: the trajectory's retention policy, last.ckpt at the end, summary.json and
dataset directories that are never half-written."""

import json
import os
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from test_cli import tiny_args

from grokkit.cli import main
from grokkit.data import TwoHopDataModule
from grokkit.data import store as store_module
from grokkit.errors import ConfigError, StorageError
from grokkit.train.board import ResultsBoard
from grokkit.train.checkpointing import AtomicCheckpointIO, TrajectoryCheckpoint


def steps_on_disk(directory: Path) -> list[int]:
    return sorted(int(path.stem.removeprefix("step=")) for path in directory.glob("step=*.ckpt"))


@pytest.mark.slow
def test_trajectory_keeps_log_spaced_and_the_newest_periodic_checkpoints(tmp_path):
    main(
        tiny_args(
            tmp_path,
            "--trainer.max_steps=63",  # not a multiple of anything: last.ckpt must still hold step 63
            "--checkpoint.every_n_train_steps=10",
            "--trajectory.per_decade=1",  # log-spaced: 1, 10, 100, ...
            "--trajectory.min_step=1",
            "--trajectory.every_n_steps=5",
            "--trajectory.keep_last=2",
        )
    )
    run = tmp_path / "runs" / "tiny" / "version_0" / "checkpoints"
    assert steps_on_disk(run / "trajectory") == [
        1,
        10,
        55,
        60,
    ]  # 5, 15, ..., 50 were deleted, 10 is log-spaced
    weights = torch.load(run / "trajectory" / "step=00000060.ckpt", weights_only=True)
    assert "state_dict" in weights and "optimizer_states" not in weights  # weights only
    last = torch.load(run / "last.ckpt", weights_only=True)
    assert last["global_step"] == 63 and "optimizer_states" in last


def test_prune_deletes_only_older_periodic_checkpoints(tmp_path):
    trajectory = TrajectoryCheckpoint(per_decade=1, min_step=1, every_n_steps=100, keep_last=2)
    for step in (1, 10, 100, 200, 300, 400, 500, 600, 250):  # 250: not periodic (another config wrote it)
        (tmp_path / f"step={step:08d}.ckpt").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("kept")
    deleted = trajectory.prune(tmp_path, step=400)
    assert sorted(path.name for path in deleted) == ["step=00000200.ckpt"]  # 100 is log-spaced
    # 300 and 400 are the newest two up to step 400; 500 and 600 (ahead of a resumed run) are left alone
    assert steps_on_disk(tmp_path) == [1, 10, 100, 250, 300, 400, 500, 600]
    assert (tmp_path / "notes.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_n_steps": 0}, r"trajectory.every_n_steps=0 must lie in \[1, 1000000000000\] \(or null"),
        ({"keep_last": 0}, r"trajectory.keep_last=0 must lie in \[1, 1000000\]"),
        ({"per_decade": 0}, r"trajectory.per_decade=0 must lie in \[1, 1000\]"),
        ({"min_step": -1}, r"trajectory.min_step=-1 must lie in \[0, 1000000000000\]"),
    ],
)
def test_trajectory_settings_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrajectoryCheckpoint(**kwargs)


def test_summary_json_is_old_or_new_never_half(tmp_path, monkeypatch):
    board = ResultsBoard()
    board.path = tmp_path / "summary.json"
    board.publish("val", 20, {"train/acc": 0.5})
    before = board.path.read_text()

    def crash_mid_write(descriptor):  # only half of the new summary reached the disk
        os.ftruncate(descriptor, os.fstat(descriptor).st_size // 2)
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash_mid_write)
    with pytest.raises(StorageError, match=r"summary.json \(disk full\); the previous one is intact"):
        board.publish("val", 40, {"train/acc": 0.9})
    monkeypatch.undo()
    assert board.path.read_text() == before and json.loads(before)["val"]["step"] == 20
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # the temporary file is gone


def test_a_dataset_directory_is_complete_or_absent(tmp_path, monkeypatch):
    data = TwoHopDataModule(
        data_dir=str(tmp_path),
        n_entities=30,
        n_relations=8,
        out_degree=4,
        phi=2.0,
        eval_size=50,
        batch_size=16,
    )

    def crash_while_hashing(path):
        raise OSError("killed")  # tensors.pt is written, the manifest is not yet

    monkeypatch.setattr(store_module, "file_sha256", crash_while_hashing)
    with pytest.raises(StorageError, match=r"cannot write dataset .* \(killed\); nothing of it was kept"):
        data.prepare_data()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # no half directory under the real name, no staging left behind
    data.setup()  # the next attempt builds it
    assert json.loads((data.dataset_dir / "manifest.json").read_text())["counts"]["train"] > 0


@contextmanager
def files_limited_to(size: int) -> Iterator[None]:
    """A real failed write, as on a disk that fills up: this process's files may not grow past ``size``."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)


def test_a_write_that_does_not_fit_on_the_disk_is_refused_in_one_line_and_leaves_nothing(tmp_path):
    data = TwoHopDataModule(
        data_dir=str(tmp_path / "data"), n_entities=30, n_relations=8, out_degree=4, phi=2.0
    )
    with files_limited_to(4096):
        with pytest.raises(
            StorageError, match=r"cannot write dataset .* \(File too large\); nothing of it was"
        ):
            data.prepare_data()
        checkpoint = tmp_path / "last.ckpt"
        with pytest.raises(StorageError, match=rf"cannot write checkpoint {checkpoint} \(File too large\)"):
            AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(10_000)}, checkpoint)
    assert list(tmp_path.iterdir()) == []  # no dataset, no data directory made for it, no temporary file
