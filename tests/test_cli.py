"""End to end through the CLI: a real (tiny) training run, read back from its TensorBoard events."""

import gc
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import rich.progress
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.profilers import SimpleProfiler
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from grokkit.cli import build_cli, main
from grokkit.cli.console import GrokProgressBar
from grokkit.data.splits import EVAL_SPLITS
from grokkit.lightning_private import skip_inherited_batch_hooks
from grokkit.train.dispatch import NoProfiler

ROOT = Path(__file__).resolve().parents[1]


def tiny_args(tmp_path, *extra):
    return [
        "fit",
        "--config", str(ROOT / "configs/tiny.yaml"),
        f"--data.data_dir={tmp_path / 'data'}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        *extra,
    ]  # fmt: skip


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_fit_writes_events_config_and_checkpoints(tmp_path):
    main(tiny_args(tmp_path))
    run = tmp_path / "runs" / "tiny" / "version_0"
    curves = scalars(run)
    for split in EVAL_SPLITS:
        assert len(curves[f"val/{split}/acc"]) == 3  # validations at steps 20, 40, 60
        assert all(0.0 <= value <= 1.0 for _, value in curves[f"val/{split}/acc"])
    assert curves["train/loss"][-1][1] < curves["train/loss"][0][1]  # it learns
    assert "lr-AdamW/decay" in curves
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["n_entities"] == 40 and config["seed_everything"] == 0
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 60 and "optimizer_states" in last
    trajectory = (
        sorted((run / "checkpoints" / "trajectory").iterdir())
        if (run / "checkpoints" / "trajectory").exists()
        else []
    )
    assert trajectory == []  # min_step 100 > 60 steps


@pytest.mark.slow
def test_same_seed_gives_the_same_numbers(tmp_path):
    main(tiny_args(tmp_path / "a", "--trainer.max_steps=20"))
    main(tiny_args(tmp_path / "b", "--trainer.max_steps=20"))
    a, b = (scalars(tmp_path / x / "runs" / "tiny" / "version_0") for x in "ab")
    assert a["val/test_inferred_iid/loss"] == b["val/test_inferred_iid/loss"]
    assert a["train/loss"] == b["train/loss"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.no_such_key=1"], "no_such_key"),
        (["--data.phi=many"], 'Parser key "data.phi"'),
        (["--data.out_degree=50"], "data.out_degree=50 is larger than data.n_relations=10"),
        (["--data.phi=500"], "data.phi=500.0 asks for"),
        (["--data.n_entities=0"], "data.n_entities=0 must lie in [1, 1000000]"),
        (["--model.network.init_args.n_heads=3"], "d_model (32) must be divisible by n_heads (3)"),
    ],
)
def test_bad_config_is_refused_in_one_line(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_args(tmp_path, *extra))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("grokkit: error:") and message in error
    assert not (tmp_path / "runs" / "tiny" / "version_0" / "checkpoints").exists()


def test_the_console_entry_point_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "grokkit", *tiny_args(tmp_path, "--data.phi=500")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("grokkit: error: data.phi=500.0 asks for")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_progress_bar_can_be_turned_off(tmp_path):
    main(tiny_args(tmp_path, "--trainer.max_steps=5", "--trainer.enable_progress_bar=false"))
    assert (tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_a_fit_without_a_logger_gets_no_learning_rate_monitor(tmp_path, monkeypatch):
    """grokkit adds Lightning's LearningRateMonitor only where there is a logger: it refuses a trainer without."""
    monkeypatch.chdir(tmp_path)  # Lightning's default root directory
    main(tiny_args(tmp_path, "--trainer.max_steps=5", "--trainer.logger=false"))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_a_tool_building_its_own_cli_under_another_command_line_is_not_warned(tmp_path, monkeypatch):
    """`grokkit transfer` and `analyze` parse args of their own while sys.argv holds the tool's."""
    monkeypatch.setattr(sys, "argv", ["grokkit", "transfer", "--source", "runs/x"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = build_cli(tiny_args(tmp_path)[1:], run=False, save_config=False)
    assert (
        cli.config["trainer"]["max_steps"]
        == yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())["trainer"]["max_steps"]
    )
    assert not [w for w in caught if "args parameter" in str(w.message)]


@pytest.mark.slow
def test_the_progress_bar_counts_steps_under_gradient_accumulation(tmp_path, monkeypatch):
    """Every count the bar is given is a step, never a batch count (4 a step here): rich would take the way up
    to a batch count as progress, and show a rate 4x too high."""
    counts, update = [], rich.progress.Progress.update
    monkeypatch.setattr(
        rich.progress.Progress,
        "update",
        lambda self, task, **kw: (counts.append(kw.get("completed")), update(self, task, **kw))[1],
    )
    args = tiny_args(tmp_path, "--trainer.max_steps=5", "--trainer.accumulate_grad_batches=4")[1:]
    cli = build_cli(args, run=False, save_config=False)
    next(c for c in cli.trainer.callbacks if isinstance(c, GrokProgressBar)).update_seconds = 0.0
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert 5 in counts and max(count for count in counts if count is not None) == 5


class BackwardCounter(Callback):
    """Overrides two batch hooks and sets a third on the instance; inherits the rest."""

    def __init__(self) -> None:
        self.calls = {"on_before_backward": 0, "on_after_backward": 0, "on_train_batch_start": 0}
        self.on_train_batch_start = lambda *args: self.count("on_train_batch_start")

    def count(self, hook: str) -> None:
        self.calls[hook] += 1

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.count("on_before_backward")
        self.frozen = gc.get_freeze_count()

    def on_after_backward(self, trainer, pl_module) -> None:
        self.count("on_after_backward")


@pytest.mark.slow
def test_a_fit_calls_only_the_batch_hooks_a_callback_defines_with_the_heap_frozen(tmp_path):
    cli = build_cli(tiny_args(tmp_path, "--trainer.max_steps=3")[1:], run=False, save_config=False)
    trainer = cli.trainer
    assert isinstance(trainer.profiler, NoProfiler)
    bar = next(c for c in trainer.callbacks if isinstance(c, GrokProgressBar))
    assert callable(bar.on_train_batch_end)  # the bar's own hook
    bar.update_seconds, shown, show = 3600.0, [], bar.show_steps
    bar.show_steps = lambda trainer: (shown.append(trainer.global_step), show(trainer))
    assert bar.on_before_backward is None  # an inherited no-op
    counter = BackwardCounter()
    skip_inherited_batch_hooks([counter])
    assert counter.on_before_zero_grad is None and callable(counter.on_train_batch_start)
    trainer.callbacks.append(counter)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    assert counter.calls == {"on_before_backward": 3, "on_after_backward": 3, "on_train_batch_start": 3}
    assert counter.frozen > 100_000  # the import-time heap, frozen while training
    assert gc.get_freeze_count() == 0  # and unfrozen after
    assert bar.train_progress_bar.completed == 3  # Lightning called the bar's own on_train_batch_end
    assert shown == [0, 1, 3]  # the start, the first update, then none within update_seconds but the last


def test_a_configured_profiler_is_kept(tmp_path):
    cli = build_cli(tiny_args(tmp_path, "--trainer.profiler=simple")[1:], run=False, save_config=False)
    assert isinstance(cli.trainer.profiler, SimpleProfiler)


def test_summary_json_is_strict_json_when_a_split_is_empty(tmp_path):
    """No OOD facts: the OOD splits have no items, their accuracy is no number, and summary.json says null."""
    main(tiny_args(tmp_path, "--data.ood_fraction=0", "--trainer.max_steps=20"))
    text = (tmp_path / "runs" / "tiny" / "version_0" / "summary.json").read_text()

    def refuse(constant: str) -> None:
        raise ValueError(f"summary.json holds {constant}, which JSON lacks")

    val = json.loads(text, parse_constant=refuse)["val"]
    assert val["test_inferred_ood/acc"] is None and val["ood_atomic/acc"] is None
    assert 0.0 <= val["test_inferred_iid/acc"] <= 1.0


def test_a_fit_that_ends_before_its_first_validation_warns(tmp_path):
    with pytest.warns(UserWarning, match=r"trainer.max_steps=2 ends the run before its first validation"):
        main(tiny_args(tmp_path, "--trainer.max_steps=2"))  # tiny.yaml validates every 20 steps
    assert not (tmp_path / "runs" / "tiny" / "version_0" / "summary.json").exists()
