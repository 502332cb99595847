"""Runs sharing a machine: a new dataset that several runs need at once is built once and used by all, a
build killed midway leaves nothing a later run would read, two runs never share a run directory, and a run or
sweep directory another process works in is refused."""

import hashlib
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from test_cli import ROOT, scalars, tiny_args

from grokkit.cli import GrokkitCLI, main
from grokkit.data import TwoHopDataModule

TINY_DATA = {"n_entities": 40, "n_relations": 10, "out_degree": 5, "phi": 3.0, "eval_size": 200}


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "grokkit", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_two_runs_on_the_same_new_dataset_build_it_once_and_train_on_identical_data(tmp_path):
    args = tiny_args(tmp_path, "--trainer.max_steps=10", "--trainer.enable_progress_bar=false")
    runs = [start(*args), start(*args)]  # at once, on the same new data directory and run name
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert sum("grokkit: building dataset" in error for error in errors) == 1, errors
    (dataset,) = (tmp_path / "data").iterdir()  # one dataset directory, no temporary one left
    run_dirs = sorted((tmp_path / "runs" / "tiny").iterdir())
    assert [path.name for path in run_dirs] == ["version_0", "version_1"]
    for version, run_dir in enumerate(run_dirs):
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["trainer"]["logger"]["init_args"]["version"] == version
    losses = [scalars(run_dir)["train/loss"] for run_dir in run_dirs]
    assert losses[0] == losses[1] and len(losses[0]) == 1  # same seed, same data: the same step-10 loss


def test_a_build_killed_midway_leaves_nothing_a_later_run_uses(tmp_path):
    dies_before_the_manifest = f"""
import os, signal
from grokkit.data import TwoHopDataModule, store
store.file_sha256 = lambda path: os.kill(os.getpid(), signal.SIGKILL)  # tensors.pt written, nothing else
TwoHopDataModule(data_dir={str(tmp_path)!r}, **{TINY_DATA!r}).prepare_data()
"""
    killed = subprocess.run([sys.executable, "-c", dies_before_the_manifest], cwd=ROOT, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    data = TwoHopDataModule(data_dir=str(tmp_path), **TINY_DATA)
    leftovers = list(tmp_path.iterdir())
    assert leftovers and all(path.name.startswith(f".{data.dataset_dir.name}.") for path in leftovers)
    data.setup("fit")  # the dead builder's lock is gone: builds anew and deletes its leftovers
    assert list(tmp_path.iterdir()) == [data.dataset_dir]
    assert len(data.tables["train"]) == data.manifest["counts"]["train"]


def test_a_run_whose_version_was_claimed_meanwhile_takes_the_next(tmp_path, monkeypatch):
    check_inputs = GrokkitCLI.check_inputs

    def another_run_claims_version_0(self):
        (tmp_path / "runs" / "tiny" / "version_0").mkdir(parents=True)
        return check_inputs(self)

    monkeypatch.setattr(GrokkitCLI, "check_inputs", another_run_claims_version_0)
    main(tiny_args(tmp_path, "--trainer.max_steps=1", "--trainer.enable_progress_bar=false"))
    assert list((tmp_path / "runs" / "tiny" / "version_0").iterdir()) == []
    run = tmp_path / "runs" / "tiny" / "version_1"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["logger"]["init_args"]["version"] == 1
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file of a run directory with the hash of its content."""
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


LOCKER = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(75)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def locked_elsewhere(directory: Path) -> bool:
    """Whether another process holds ``directory``'s lock (grokkit's is ``flock`` on the directory)."""
    return subprocess.run([sys.executable, "-c", LOCKER, str(directory), "0"]).returncode == 75


@contextmanager
def held_by_another_process(directory: Path):
    holder = subprocess.Popen([sys.executable, "-c", LOCKER, str(directory), "300"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_fit_holds_its_run_directory_and_a_second_process_is_refused_it(tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs" / "tiny" / "version_0"
    seen, before_fit = [], GrokkitCLI.before_fit

    def check_the_lock(self):
        before_fit(self)
        seen.append(locked_elsewhere(run))

    monkeypatch.setattr(GrokkitCLI, "before_fit", check_the_lock)
    args = tiny_args(tmp_path, "--trainer.max_steps=2", "--trainer.enable_progress_bar=false")
    main(args)
    assert seen == [True] and not locked_elsewhere(run)  # held through the fit, released after it
    files = snapshot(run)
    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps=4"]
    with held_by_another_process(run), pytest.raises(SystemExit) as exit_info:
        main(resume)
    assert exit_info.value.code == 75  # sysexits' EX_TEMPFAIL: try again later
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"grokkit: error: {run} is being trained by another process (it holds the run directory's lock); wait "
        "for it to end, or stop it and resume with --ckpt_path last"
    ]
    assert snapshot(run) == files  # nothing read, cleared or written
    main(resume)  # the other process ended
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_a_sweep_into_an_out_another_sweep_runs_in_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    sweep = [
        "sweep", "--config", str(ROOT / "configs/tiny.yaml"), "--grid", "data.phi=[3.0,4.0]",
        f"--data.data_dir={tmp_path / 'data'}", "--out", str(out),
    ]  # fmt: skip
    with held_by_another_process(out):
        main([*sweep, "--dry-run"])  # writes nothing: not refused
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(sweep)
    assert exit_info.value.code == 75
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"grokkit: error: --out {out}: another grokkit process is running in it (it holds the directory's lock); "
        "wait for it to end, or choose another --out"
    ]
    assert list(tmp_path.iterdir()) == [out] and not list(out.iterdir())
