"""A run that has to stop says why in one line and keeps a checkpoint to resume from: non-finite losses and
gradients (stop, or skip the update), and probes that raise."""

import gc
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from test_cli import scalars, tiny_args

from grokkit.cli import build_cli, main
from grokkit.errors import NonFiniteError
from grokkit.probes import Probe
from grokkit.train.nonfinite import NonFiniteWatch

pytestmark = pytest.mark.slow


class PoisonGradients(Callback):
    """Writes NaN into one gradient at the given steps, and records whether the update changed anything."""

    unchanged: list[bool] = []  # one entry per poisoned step, read by the tests

    def __init__(self, steps: list[int]) -> None:
        self.steps = steps
        self.before: dict[str, torch.Tensor] | None = None

    @staticmethod
    def snapshot(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        state = {f"module/{name}": t.detach().clone() for name, t in pl_module.state_dict().items()}
        for i, (parameter, moments) in enumerate(trainer.optimizers[0].state.items()):
            assert isinstance(parameter, torch.Tensor)
            state |= {f"optimizer/{i}/{key}": value.clone() for key, value in moments.items()}
        return state

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step in self.steps:  # runs before the module's check
            next(pl_module.net.parameters()).grad[0] = float("nan")
            self.before = self.snapshot(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.before is not None:
            after = self.snapshot(trainer, pl_module)
            same = after.keys() == self.before.keys() and all(
                torch.equal(after[k], self.before[k]) for k in after
            )
            PoisonGradients.unchanged.append(same)
            self.before = None


class BlowUpWeights(Callback):
    """Diverges the run at ``step``: scales every weight by 1e30, as a learning rate of 1e30 would (one that
    the range check refuses)."""

    def __init__(self, step: int = 1) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for parameter in pl_module.net.parameters():
                    parameter.mul_(1e30)


class Crash(Callback):
    """An error that is not grokkit's, after ``step`` steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


class FailingProbe(Probe):
    """Measures a constant, and divides by zero at ``fail_at``."""

    def __init__(self, fail_at: int = 40) -> None:
        super().__init__(every_n_steps=1)
        self.fail_at = fail_at

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        return {"value": 1 / (trainer.global_step != self.fail_at)}


def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "tiny" / "version_0"


def fails(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exit_info.value.code, err.strip().splitlines()[-1]


def drop_callback(config_path: Path, class_name: str) -> None:
    """What the error message tells the user to do: remove the callback from the run's config."""
    config = yaml.safe_load(config_path.read_text())
    trainer = config["trainer"]
    trainer["callbacks"] = [c for c in trainer["callbacks"] if not c["class_path"].endswith(class_name)]
    config_path.write_text(yaml.safe_dump(config))


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_a_non_finite_gradient_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    poison = ["--trainer.callbacks+=test_failures.PoisonGradients", "--trainer.callbacks.steps=[25]"]
    code, error = fails(tiny_args(tmp_path, "--checkpoint.every_n_train_steps=10", *poison), capsys)
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    assert code == 1
    assert error == (
        f"grokkit: error: non-finite gradient at step 25; the run stopped before updating the weights, last good "
        f"checkpoint: {last} (step 20); fix: lower model.lr, set trainer.gradient_clip_val (e.g. 1.0) or set "
        "model.nonfinite=skip, then resume with --ckpt_path last"
    )
    saved = checkpoint(last)
    assert saved["global_step"] == 20  # not overwritten after the fault
    assert all(torch.isfinite(value).all() for value in saved["state_dict"].values())
    # Resume once the cause is gone.
    drop_callback(run_dir(tmp_path) / "config.yaml", "PoisonGradients")
    main(["fit", "--config", str(run_dir(tmp_path) / "config.yaml"), "--ckpt_path", "last"])
    assert checkpoint(last)["global_step"] == 60


class CountHostReads(Callback):
    """Counts tensor -> Python reads (each one a device sync on a GPU) during steps ``start`` to ``stop``."""

    reads: list[str] = []
    NAMES = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")

    def __init__(self, start: int = 11, stop: int = 19) -> None:
        self.start, self.stop, self.saved = start, stop, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.start:
            for name in self.NAMES:
                original = self.saved[name] = getattr(torch.Tensor, name)
                setattr(torch.Tensor, name, self.counting(name, original))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.stop:
            for name, original in self.saved.items():
                setattr(torch.Tensor, name, original)

    @staticmethod
    def counting(name, original):
        def counted(tensor, *args, **kwargs):
            CountHostReads.reads.append(name)
            return original(tensor, *args, **kwargs)

        return counted


def test_a_deferred_check_names_the_first_bad_step_and_saves_nothing_after_it(tmp_path, capsys):
    """Read every 50 steps (as on a GPU), the check still stops at the first bad step's number, masks every
    update from there on, and refuses the step-30 checkpoint; between reads a step reads nothing back."""
    poison = ["--trainer.callbacks+=test_failures.PoisonGradients", "--trainer.callbacks.steps=[25]"]
    count = ["--trainer.callbacks+=test_failures.CountHostReads", "--model.ema_decay=0.9"]
    args = [
        "--checkpoint.every_n_train_steps=10",
        "--model.nonfinite_check_every=50",
        "--trainer.log_every_n_steps=20",
    ]
    CountHostReads.reads = []
    code, error = fails(tiny_args(tmp_path, *args, *poison, *count), capsys)
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    assert code == 1 and error.startswith("grokkit: error: non-finite gradient at step 25; the run stopped")
    assert f"last good checkpoint: {last} (step 20)" in error
    assert checkpoint(last)["global_step"] == 20
    assert CountHostReads.reads == []  # steps 11-18: no logging step, no checkpoint, no check due, EMA on


def test_a_diverging_loss_stops_the_run_with_its_step(tmp_path, capsys):
    code, error = fails(tiny_args(tmp_path, "--trainer.callbacks+=test_failures.BlowUpWeights"), capsys)
    assert code == 1
    assert error.startswith("grokkit: error: non-finite loss at step 1; the run stopped")
    assert "last good checkpoint: none saved yet; fix: lower model.lr" in error
    assert gc.get_freeze_count() == 0  # the failed fit unfroze the heap it froze


def test_save_on_exception_saves_where_the_run_stopped(tmp_path, capsys):
    """``checkpoint.save_on_exception``, Lightning's option, keeps its meaning on grokkit's checkpoint."""
    crash = ["--trainer.callbacks+=test_failures.Crash", "--trainer.callbacks.step=5"]
    with pytest.raises(RuntimeError, match="crash at step 5"):
        main(tiny_args(tmp_path, *crash, "--checkpoint.save_on_exception=true"))
    saved = sorted((run_dir(tmp_path) / "checkpoints").glob("*.ckpt"))
    assert saved and {checkpoint(path)["global_step"] for path in saved} == {5}
    # ... but never the state after a non-finite step
    blow_up = "--trainer.callbacks+=test_failures.BlowUpWeights"
    code, error = fails(tiny_args(tmp_path / "bad", blow_up, "--checkpoint.save_on_exception=true"), capsys)
    assert code == 1 and error.startswith("grokkit: error: non-finite loss at step 1")
    assert not list((run_dir(tmp_path / "bad") / "checkpoints").glob("*.ckpt"))


def test_skip_mode_skips_the_update_entirely_and_counts_it(tmp_path):
    PoisonGradients.unchanged = []
    main(
        tiny_args(
            tmp_path,
            "--model.nonfinite=skip",
            "--model.ema_decay=0.9",
            "--trainer.callbacks+=test_failures.PoisonGradients",
            "--trainer.callbacks.steps=[5, 6, 30]",
        )
    )
    # weights, EMA weights, AdamW moments and step counts: untouched by the three skipped updates
    assert PoisonGradients.unchanged == [True, True, True]
    skipped = dict(scalars(run_dir(tmp_path))["train/skipped_steps"])
    assert skipped[9] == 2 and skipped[29] == 2 and skipped[59] == 3
    last = checkpoint(run_dir(tmp_path) / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 60 and last["grokkit"]["skipped_steps"] == 3
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values())


def test_a_failing_probe_names_itself_saves_the_state_and_the_run_resumes(tmp_path, capsys):
    probe = ["--trainer.callbacks+=test_failures.FailingProbe", "--trainer.callbacks.fail_at=40"]
    code, error = fails(tiny_args(tmp_path / "failed", *probe), capsys)
    run = run_dir(tmp_path / "failed")
    last = run / "checkpoints" / "last.ckpt"
    assert code == 1
    assert error == (
        "grokkit: error: probe 'failing' failed at step 40: ZeroDivisionError('division by zero'); training "
        f"state saved to {last}; fix the probe or remove it from trainer.callbacks, then resume with "
        "--ckpt_path last"
    )
    assert checkpoint(last)["global_step"] == 40
    assert [step for step, _ in scalars(run)["probe/failing/value"]] == [20]
    drop_callback(run / "config.yaml", "FailingProbe")
    main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last"])

    main(tiny_args(tmp_path / "straight"))  # the same run without the probe, uninterrupted
    resumed, straight = scalars(run), scalars(run_dir(tmp_path / "straight"))
    for tag, points in straight.items():
        if tag.startswith(("val/", "train/")):
            assert dict(resumed[tag]) == dict(points), tag


@pytest.mark.parametrize(
    ("losses", "poisoned", "message"),
    [
        ([1.0, 1.0, 1.0, float("nan"), 1.0], set(), "non-finite loss at step 3"),
        ([1.0, 1.0, 1.0, 1.0, float("nan")], {3}, "non-finite gradient at step 3"),  # a later bad loss too
        ([1.0, float("inf"), 1.0, 1.0, 1.0], {1, 2}, "non-finite loss at step 1"),
    ],
)
def test_the_check_read_late_names_the_first_bad_step_and_its_cause(tmp_path, losses, poisoned, message):
    """Between host reads the verdict is two counters on the device; read five steps late, they still name
    the first bad step and whether its loss was the cause, whatever the steps after it did."""
    watch = NonFiniteWatch("stop", every=50)
    parameter = torch.nn.Parameter(torch.zeros(3))
    for step, loss in enumerate(losses):
        parameter.grad = torch.full((3,), float("nan") if step in poisoned else 0.5)
        watch.observe(step, torch.tensor(loss), [parameter])
        assert watch.mask.item() == (step >= int(message.split()[-1]))  # every update from the first bad one
    trainer = L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteError, match=f"^{message}; the run stopped"):
        watch.raise_if_bad(trainer)


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_a_module_fits_again_with_a_clean_watch(tmp_path, mode):
    """Each fit starts the non-finite watch clean: after a fit stopped at a bad step, the same module (its
    weights those before that step) trains in a new fit; in skip mode the skipped updates add up over fits."""
    poison = ["--trainer.callbacks+=test_failures.PoisonGradients", "--trainer.callbacks.steps=[2]"]
    args = tiny_args(tmp_path, "--trainer.max_steps=6", f"--model.nonfinite={mode}", *poison)[1:]  # no "fit"
    cli = build_cli(args, run=False, save_config=False)
    if mode == "stop":
        with pytest.raises(NonFiniteError, match="non-finite gradient at step 2"):
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    else:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    again = L.Trainer(
        max_steps=4, callbacks=[PoisonGradients([1] if mode == "skip" else [])], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    before = [p.detach().clone() for p in cli.model.net.parameters()]
    again.fit(cli.model, datamodule=cli.datamodule)
    assert again.global_step == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, cli.model.net.parameters(), strict=True))
    watch = cli.model.nonfinite_watch
    assert int(watch.skipped_total()) == (2 if mode == "skip" else 0)
    # the first fit's count moved into skipped_before at the second fit's start; this fit counted its own
    assert (watch.skipped_before, int(watch.counts[0])) == ((1, 1) if mode == "skip" else (0, 0))
