"""Crash safety: a run killed with SIGKILL and resumed with ``--ckpt_path last`` logs what an uninterrupted one
logs, and a checkpoint killed mid-write leaves the previous one loadable."""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.utilities.exceptions import SIGTERMException
from test_cli import ROOT, scalars

from grokkit.data import TwoHopDataModule
from grokkit.train.checkpointing import ResumableCheckpoint, TrajectoryCheckpoint

pytestmark = pytest.mark.slow

# Dropout, EMA, a metric-triggered switch (it fires at the validation of step 20), the Grokfast gradient
# filter, a probe and a detector: every kind of state a resume has to bring back. last.ckpt every 10 steps, validation every 20.
RUN_ARGS = [
    "--trainer.max_steps=100",
    "--checkpoint.every_n_train_steps=10",
    "--model.network.init_args.dropout=0.1",
    "--model.ema_decay=0.9",
    "--trainer.callbacks+=grokkit.train.schedule.SwitchHyperparameters",
    "--trainer.callbacks.threshold=0.0",
    "--trainer.callbacks.weight_decay=0.5",
    "--trainer.callbacks.lr_scale=0.5",
    "--trainer.callbacks+=grokkit.train.grokfast.Grokfast",
    "--trainer.callbacks+=plugins.weight_norm.WeightNorm",
    "--trainer.callbacks+=GrokkingOnset",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def fit_command(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "grokkit", "fit",
        "--config", str(ROOT / "configs/tiny.yaml"),
        f"--data.data_dir={tmp_path / 'data'}",
        f"--trainer.logger.init_args.save_dir={tmp_path / name}",
        *RUN_ARGS,
        *extra,
    ]  # fmt: skip


def run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def checkpoint_step(path: Path) -> int | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except FileNotFoundError:
        return None


def kill_after_checkpoint(command: list[str], last: Path, step: int, timeout: float = 120.0) -> int:
    """Start ``command``, SIGKILL it as soon as ``last`` holds ``step`` or later; returns the step it held."""
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, seen = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, (
                f"the run ended before step {step}: {process.stderr.read()[-2000:]}"
            )
            modified = last.stat().st_mtime_ns if last.exists() else None
            if modified is not None and modified != seen:  # atomic writes: never a half-written file here
                seen = modified
                saved = checkpoint_step(last)
                if saved is not None and saved >= step:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return saved
            time.sleep(0.01)
        raise AssertionError(f"no checkpoint of step {step} within {timeout} s")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def final_values(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar by step; for a step logged twice (before a crash and after the resume) the later value."""
    return {tag: dict(points) for tag, points in scalars(run_dir).items()}


def test_killed_and_resumed_run_logs_what_an_uninterrupted_run_logs(tmp_path):
    run(fit_command(tmp_path, "straight"))
    straight = tmp_path / "straight" / "tiny" / "version_0"

    killed = tmp_path / "killed" / "tiny" / "version_0"
    last = killed / "checkpoints" / "last.ckpt"
    first = kill_after_checkpoint(fit_command(tmp_path, "killed"), last, 30)
    resume = [
        sys.executable,
        "-m",
        "grokkit",
        "fit",
        "--config",
        str(killed / "config.yaml"),
        "--ckpt_path",
        "last",
    ]
    second = kill_after_checkpoint(resume, last, 60)  # resumes after the validation of step 60
    assert 30 <= first < 60 <= second < 100, (first, second)  # killed twice, mid-run
    print(f"killed with last.ckpt at steps {first} and {second}")
    run(resume)

    expected, got = final_values(straight), final_values(killed)
    assert set(got) == set(expected)
    validation_tags = [tag for tag in expected if tag.startswith("val/")]
    assert len(validation_tags) == 11  # 5 splits x (acc, loss) + val/train/acc
    for tag in expected:
        assert got[tag] == expected[tag], tag  # equal at every step, bit for bit (CPU)
    assert sorted(expected["val/test_inferred_ood/acc"]) == [20, 40, 60, 80, 100]  # the probes' steps
    assert sorted(expected["schedule/switch"]) == [20]  # fired once, not again after a resume
    assert json.loads((killed / "summary.json").read_text()) == json.loads(
        (straight / "summary.json").read_text()
    )
    assert checkpoint_step(last) == 100
    # the run's config.yaml is the run, not its last resume: without --ckpt_path it is refused, not resumed
    assert yaml.safe_load((killed / "config.yaml").read_text())["ckpt_path"] is None


def test_a_run_stopped_by_sigterm_saves_where_it_stopped_and_resumes_exactly(tmp_path):
    """No periodic last.ckpt in 100 steps: only the save at SIGTERM lets the run resume mid-way."""
    no_periodic = ("--checkpoint.every_n_train_steps=1000", "--trajectory.min_step=10")
    run(fit_command(tmp_path, "straight", *no_periodic))
    stopped = tmp_path / "stopped" / "tiny" / "version_0"
    process = subprocess.Popen(
        fit_command(tmp_path, "stopped", *no_periodic), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL
    )
    trajectory = stopped / "checkpoints" / "trajectory"
    deadline = time.monotonic() + 120
    while not (trajectory / "step=00000032.ckpt").exists():  # a log-spaced weights-only checkpoint
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before step 32"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM  # not 0: the run did not finish
    saved = checkpoint_step(stopped / "checkpoints" / "last.ckpt")
    print(f"SIGTERM: last.ckpt at step {saved}")
    assert saved is not None and 32 <= saved < 100, saved
    run(
        [
            sys.executable,
            "-m",
            "grokkit",
            "fit",
            "--config",
            str(stopped / "config.yaml"),
            "--ckpt_path",
            "last",
        ]
    )
    expected, got = final_values(tmp_path / "straight" / "tiny" / "version_0"), final_values(stopped)
    assert got == expected  # every tag at every step, bit for bit (CPU)
    assert json.loads((stopped / "summary.json").read_text()) == json.loads(
        (tmp_path / "straight" / "tiny" / "version_0" / "summary.json").read_text()
    )


WRITER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from pathlib import Path
    import torch
    from grokkit.train.checkpointing import atomic_torch_save

    path = Path(sys.argv[1])
    atomic_torch_save({"name": "A", "weights": torch.ones(10)}, path)
    print("saved A", flush=True)

    def freeze_mid_write():  # stop this process once 8 MB of the 64 MB checkpoint B are on disk
        while not any(t.stat().st_size > 8 << 20 for t in path.parent.glob(".last.ckpt.*.tmp")):
            time.sleep(0.001)
        print("writing B", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)

    threading.Thread(target=freeze_mid_write, daemon=True).start()
    atomic_torch_save({"name": "B", "weights": [torch.zeros(1 << 18) for _ in range(64)]}, path)
    print("saved B", flush=True)
    """
)


def test_a_checkpoint_killed_mid_write_leaves_the_previous_one(tmp_path):
    path = tmp_path / "last.ckpt"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "saved A"
        assert process.stdout.readline().strip() == "writing B"  # frozen in the middle of writing B
        (temporary,) = tmp_path.glob(".last.ckpt.*.tmp")
        assert 8 << 20 < temporary.stat().st_size < 64 << 20  # B is half-written, beside A
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["name"] == "A" and torch.equal(checkpoint["weights"], torch.ones(10))
    # The next save to that path clears the dead process's temporary file.
    from grokkit.train.checkpointing import atomic_torch_save

    atomic_torch_save({"name": "C"}, path)
    assert torch.load(path, weights_only=True)["name"] == "C"
    assert list(tmp_path.glob(".last.ckpt.*.tmp")) == []


class BatchRecorder(L.LightningModule):
    """Records the items of every training batch; one weight, so that the optimizer steps."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def training_step(self, items: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.seen.append(items.clone())
        return self.weight * items.float().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class StopInsideStep(L.Callback):
    """Sends this process a SIGTERM once 5 batches are trained, inside the third step of two batches: Lightning's
    handler notes it, and the fit stops after that batch."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if len(pl_module.seen) == 5:
            assert callable(signal.getsignal(signal.SIGTERM))  # Lightning's handler, not the default kill
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_resumed_under_gradient_accumulation_trains_on_an_uninterrupted_runs_batches(tmp_path):
    """With trainer.accumulate_grad_batches=2 a step is two batches: a resumed run draws on from the batches
    the stopped one took, whether it stopped between steps or inside one (SIGTERM, saved by grokkit's
    checkpoint callback), and a trajectory checkpoint is written once per step, not once per batch."""
    small = {
        "n_entities": 30,
        "n_relations": 8,
        "out_degree": 4,
        "phi": 2.0,
        "eval_size": 50,
        "batch_size": 8,
    }

    def fit(
        max_steps: int, ckpt_path: Path | None = None, *callbacks: L.Callback
    ) -> tuple[BatchRecorder, L.Trainer, list]:
        trajectory = TrajectoryCheckpoint(per_decade=10, min_step=1)
        trainer = L.Trainer(
            max_steps=max_steps, accumulate_grad_batches=2, limit_val_batches=0, logger=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[trajectory, *callbacks],
            default_root_dir=tmp_path, enable_checkpointing=bool(callbacks),
        )  # fmt: skip
        saves, save = [], trainer.save_checkpoint
        trainer.save_checkpoint = lambda path, *args, **kwargs: (
            saves.append(path),
            save(path, *args, **kwargs),
        )
        module = BatchRecorder()
        data = TwoHopDataModule(data_dir=str(tmp_path / "data"), **small)
        with contextlib.suppress(SIGTERMException):
            trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        return module, trainer, saves

    uninterrupted, _, saves = fit(6)
    assert len(uninterrupted.seen) == 12
    assert len(saves) == len(set(saves)) == 6  # steps 1-6 are all log-spaced from step 1 at 10 a decade
    first, trainer, _ = fit(3)
    trainer.save_checkpoint(tmp_path / "step3.ckpt")
    resumed, _, _ = fit(6, tmp_path / "step3.ckpt")
    stopped, _, _ = fit(
        6, None, ResumableCheckpoint(dirpath=tmp_path / "sigterm", save_last=True), StopInsideStep()
    )
    resumed_inside, _, _ = fit(6, tmp_path / "sigterm" / "last.ckpt")
    assert [len(first.seen), len(resumed.seen), len(stopped.seen), len(resumed_inside.seen)] == [6, 6, 5, 7]
    for run in (first.seen + resumed.seen, stopped.seen + resumed_inside.seen):
        assert all(torch.equal(a, b) for a, b in zip(uninterrupted.seen, run, strict=True))


def test_a_run_killed_before_its_first_checkpoint_trains_again_from_step_0_in_its_directory(tmp_path):
    """What such a run leaves (config.yaml, events, summary.json, trajectory checkpoints) holds nothing to resume:
    ``--ckpt_path last`` clears it and trains the config from step 0 there, logging what the first attempt did."""
    from test_cli import tiny_args

    from grokkit.cli import main

    main(tiny_args(tmp_path, "--trainer.max_steps=40", "--trajectory.every_n_steps=20"))
    run = tmp_path / "runs" / "tiny" / "version_0"
    first = scalars(run)
    first_acc = json.loads((run / "summary.json").read_text())["val"]["test_inferred_iid/acc"]
    (run / "checkpoints" / "last.ckpt").unlink()  # as if killed before step 1000, the first periodic save
    rerun = [*tiny_args(tmp_path), "--config", str(run / "config.yaml"), "--ckpt_path", "last"]
    main(rerun)
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # the first attempt's events were cleared
    assert scalars(run) == first and (run / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "runs" / "tiny" / "version_1").exists()
    # validate scores the configured weights (model.init_from) without a --ckpt_path
    main(["validate", *tiny_args(tmp_path)[1:], f"--model.init_from={run / 'checkpoints' / 'last.ckpt'}"])
    (validated,) = (tmp_path / "runs" / "tiny").glob("version_*/validate/summary.json")
    assert json.loads(validated.read_text())["val"]["test_inferred_iid/acc"] == first_acc


def test_a_resume_trains_with_the_optimizer_settings_its_config_gives(tmp_path, caplog, capsys):
    """Lightning restores the checkpoint's lr and weight decay; a resume that lowers them (the fix the
    non-finite stop suggests) gets them, with the switch that fired at step 20 keeping its own weight decay
    and lr scale; a resume whose switch has another threshold (whose state the fired one's does not load
    into) is refused: it would scale the lr a second time."""
    from test_cli import tiny_args

    from grokkit.cli import main

    switch = RUN_ARGS[4:8]  # fires at the validation of step 20: weight decay 0.5, lr x 0.5
    main(tiny_args(tmp_path, "--trainer.max_steps=20", *switch))
    run = tmp_path / "runs" / "tiny" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    resumed = ["--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps=30"]
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        main(
            [
                *tiny_args(tmp_path),
                *resumed,
                "--model.lr=1e-4",
                "--model.weight_decay=0.3",
                "--model.eps=1e-6",
            ]
        )
    state = torch.load(last, weights_only=False)
    groups = [
        (g["name"], g["lr"], g["weight_decay"], g["eps"])
        for g in state["optimizer_states"][0]["param_groups"]
    ]
    assert state["global_step"] == 30
    assert groups == [("decay", 5e-5, 0.5, 1e-6), ("no_decay", 5e-5, 0.0, 1e-6)]
    assert state["lr_schedulers"][0]["base_lrs"] == [5e-5, 5e-5]
    said = caplog.text
    assert "resumed with model.lr=0.0001 (the checkpoint's run trained with 0.001)" in said
    assert "resumed with model.weight_decay" not in said  # the switch's 0.5 stays
    with pytest.raises(SystemExit):
        main(
            [
                *tiny_args(tmp_path),
                *resumed[:-1],
                "--trainer.max_steps=40",
                "--trainer.callbacks.threshold=0.5",
            ]
        )
    assert (
        "SwitchHyperparameters(monitor='val/train/acc', threshold=0.5) is not in --ckpt_path"
        in capsys.readouterr().err
    )
    assert torch.load(last, weights_only=False)["global_step"] == 30  # refused before training
    main([*tiny_args(tmp_path), *resumed[:-1], "--trainer.max_steps=40"])  # the fired switch: no second fire
    assert [step for step, _ in scalars(run)["schedule/switch"]] == [20]


def test_a_fork_is_its_own_run_and_starts_again_from_the_checkpoint_it_left_from(tmp_path, capsys):
    """A fit from another run's checkpoint keeps that checkpoint in its config.yaml, through its resumes too: the
    file is refused where the fork already is, and a fork killed before its first last.ckpt (due at step 30
    here, its first multiple of 15 after its start at 20) trains again from that checkpoint, not from nothing."""
    from test_cli import tiny_args

    from grokkit.cli import main

    main(tiny_args(tmp_path, "--trainer.max_steps=20"))
    source = tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    thin = ["--checkpoint.every_n_train_steps=15", "--trajectory.every_n_steps=5"]
    main(tiny_args(tmp_path, "--trainer.max_steps=28", *thin, f"--ckpt_path={source}"))
    fork = tmp_path / "runs" / "tiny" / "version_1"
    assert yaml.safe_load((fork / "config.yaml").read_text())["ckpt_path"] == str(source)
    with pytest.raises(SystemExit):  # it would train a second run over the fork's files
        main([*tiny_args(tmp_path), "--config", str(fork / "config.yaml")])
    validate = ["validate", *tiny_args(tmp_path)[1:], "--config", str(fork / "config.yaml")]
    with pytest.raises(SystemExit):  # it would score the source's checkpoint as the fork's
        main(validate)
    assert f"ckpt_path {source} comes from {fork / 'config.yaml'}" in capsys.readouterr().err
    main([*validate, "--ckpt_path", str(fork / "checkpoints" / "last.ckpt")])
    assert json.loads((fork / "validate" / "summary.json").read_text())["val"]["step"] == 28
    assert (fork / "checkpoints" / "trajectory" / "step=00000025.ckpt").is_file()  # a trace past step 15
    (fork / "checkpoints" / "last.ckpt").unlink()  # killed before its first periodic save
    main([*tiny_args(tmp_path), "--config", str(fork / "config.yaml"), "--ckpt_path", "last"])
    assert torch.load(fork / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 28
    assert "lr-AdamW/decay" not in scalars(fork)  # logged at steps 9 and 19 by a run from nothing
    # the resume kept it
    assert yaml.safe_load((fork / "config.yaml").read_text())["ckpt_path"] == str(source)
    main(
        [
            *tiny_args(tmp_path),
            "--config",
            str(fork / "config.yaml"),
            "--ckpt_path",
            "last",
            "--trainer.max_steps=32",
        ]
    )
    assert yaml.safe_load((fork / "config.yaml").read_text())["ckpt_path"] == str(source)
