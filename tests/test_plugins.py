"""User probes: the example plugin through the CLI, entry points, class_path errors, and offline analysis."""

import json
import shutil
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_concurrency import held_by_another_process

import grokkit.probes.registry as registry
from grokkit.allowed import Range
from grokkit.cli import build_cli, main
from grokkit.data.splits import EVAL_SPLITS
from grokkit.errors import ConfigError
from grokkit.probes import Probe
from grokkit.train.board import ResultsBoard

ROOT = Path(__file__).resolve().parents[1]
PROBES = ["plugins.weight_norm.WeightNorm", "GrokkingOnset", "RunClassifier", "test_plugins.RunCounter"]
TRAJECTORY = [10, 13, 16, 20, 25, 32, 40, 50]  # log-spaced steps >= 10 of a 60-step run, 10 per decade


class RunCounter(Probe):
    """A probe with state: the steps it ran at, and how many validations the results board holds."""

    def __init__(self, every_n_steps: int = 1) -> None:
        super().__init__(every_n_steps=every_n_steps)
        self.steps: list[int] = []

    def compute(self, trainer, pl_module) -> dict:
        self.steps.append(trainer.global_step)
        board_points = len(ResultsBoard.of(trainer).series("val", "train/acc"))
        return {"steps": list(self.steps), "board_points": board_points}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps": list(self.steps)}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.steps = list(state_dict["steps"])


class FailsFrom(Probe):
    """Fails at every checkpoint from ``step`` on: an analysis that gets part of the way."""

    def __init__(self, step: int = 20) -> None:
        super().__init__()
        self.step = step

    def compute(self, trainer, pl_module) -> dict:
        if trainer.global_step >= self.step:
            raise ZeroDivisionError("division by zero")
        return {"value": 1.0}


class TopK(Probe):
    """Declares the range of its own argument, as a plugin may."""

    argument_ranges = {"top_k": Range(1, 100)}

    def __init__(self, top_k: int = 5) -> None:
        super().__init__()
        self.top_k = top_k


class Strict(Probe):
    """Refuses a bad argument in its constructor, as a plugin may."""

    def __init__(self, top_k: int = 5) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        super().__init__()
        self.top_k = top_k


class SplitSize(Probe):
    """Names itself after an argument it sets after the base class's constructor."""

    def __init__(self, split: str = "test_inferred_iid", every_n_steps: int = 1) -> None:
        super().__init__(every_n_steps=every_n_steps)
        self.split = split

    @property
    def name(self) -> str:
        return f"split_size/{self.split}"


def tiny_args(tmp_path, *extra, command="fit"):
    return [
        command,
        "--config", str(ROOT / "configs/tiny.yaml"),
        f"--data.data_dir={tmp_path / 'data'}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        *extra,
    ]  # fmt: skip


def scalars(run_dir: Path) -> dict[str, list[int]]:
    """The steps at which each scalar was logged."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def last_error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 60-step run with the example plugin, onset and classifier, and trajectory checkpoints."""
    tmp_path = tmp_path_factory.mktemp("plugins")
    callbacks = [f"--trainer.callbacks+={probe}" for probe in PROBES]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)  # `plugins.` resolves from the repository root
        main(tiny_args(tmp_path, *callbacks, "--trajectory.min_step=10", "--trajectory.per_decade=10"))
    return tmp_path / "runs" / "tiny" / "version_0"


@pytest.mark.slow
def test_example_plugin_loads_from_plugins_and_logs(tiny_run):
    curves = scalars(tiny_run)
    assert curves["probe/weight_norm/total"] == [20, 40, 60]  # every validation
    assert curves["probe/weight_norm/blocks.0"] == [20, 40, 60]
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["weight_norm"]["step"] == 60 and summary["weight_norm"]["total"] > 0
    assert "t_mem" in summary["grokking"]
    assert set(summary["grokking"]["t_gen"]["test_inferred_ood"]) == {"0.5", "0.9", "0.99"}
    assert summary["classification"]["label"] == "not_generalized"  # 60 steps: nothing learnt yet


@pytest.mark.slow
def test_analyze_runs_the_probes_over_every_checkpoint(tiny_run, capsys):
    main(["analyze", str(tiny_run)])
    assert "9 checkpoints, steps 10-60" in capsys.readouterr().out
    summary = json.loads((tiny_run / "analysis" / "summary.json").read_text())
    assert summary["analysis"]["steps"] == [*TRAJECTORY, 60]  # the trajectory, then last.ckpt
    assert {"val", "weight_norm", "grokking", "classification"} <= set(summary)
    curves = scalars(tiny_run / "analysis")
    for tag in ("val/test_inferred_ood/acc", "probe/weight_norm/total", "probe/classification/code"):
        assert curves[tag] == [*TRAJECTORY, 60]
    assert json.loads((tiny_run / "summary.json").read_text())["weight_norm"]["step"] == 60  # run untouched


@pytest.mark.slow
def test_analyze_goes_forward_in_steps_when_last_ckpt_is_older_than_the_trajectory(tiny_run, tmp_path):
    """A run killed between a periodic last.ckpt and a later trajectory checkpoint: last.ckpt at step 45."""
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    last = run / "checkpoints" / "last.ckpt"
    torch.save({**torch.load(last, weights_only=False), "global_step": 45}, last)
    main(["analyze", str(run)])
    assert json.loads((run / "analysis" / "summary.json").read_text())["analysis"]["steps"] == [
        *TRAJECTORY[:-1],
        45,
        50,
    ]


@pytest.mark.slow
def test_analyze_adds_or_replaces_probes_from_a_probes_config(tiny_run, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "trainer:\n  callbacks:\n    - class_path: GrokkingOnset\n      init_args: {thresholds: [0.01]}\n"
    )
    main(["analyze", str(tiny_run), "--probes-config", str(extra), "--name", "analysis-low"])
    summary = json.loads((tiny_run / "analysis-low" / "summary.json").read_text())
    assert set(summary["grokking"]["t_gen"]["test_inferred_ood"]) == {"0.01"}  # the run's onset, replaced
    assert set(
        json.loads((tiny_run / "analysis" / "summary.json").read_text())["grokking"]["t_gen"][
            "test_inferred_ood"
        ]
    ) == {"0.5", "0.9", "0.99"}  # beside the first
    main(["analyze", str(tiny_run), "--probes-config", str(extra)])
    summary = json.loads((tiny_run / "analysis" / "summary.json").read_text())
    assert {"weight_norm", "classification"} <= set(summary)
    extra.write_text(
        "trainer:\n  callbacks:\n    - class_path: CausalTracing\n      init_args: {sample_size: 0}\n"
    )
    with pytest.raises(SystemExit) as refused:  # a bad probes config is refused before the old analysis goes
        main(["analyze", str(tiny_run), "--probes-config", str(extra)])
    assert refused.value.code == 2
    assert json.loads((tiny_run / "analysis" / "summary.json").read_text()) == summary


@pytest.mark.slow
def test_a_failing_analysis_leaves_the_earlier_one_as_it_was(tiny_run, tmp_path, capsys):
    main(["analyze", str(tiny_run), "--name", "analysis-kept"])
    kept = (tiny_run / "analysis-kept" / "summary.json").read_text()
    extra = tmp_path / "extra.yaml"
    for (
        probe,
        code,
        message,
    ) in [  # refused by the probe's own check, before any checkpoint; failing at step 20
        (
            "{class_path: CausalTracing, init_args: {mid_stage: 99}}",
            2,
            "causal_tracing.mid_stage=99 must be a",
        ),
        (
            "{class_path: test_plugins.FailsFrom}",
            1,
            "probe 'fails_from' failed at step 20: ZeroDivisionError",
        ),
    ]:
        extra.write_text(f"trainer:\n  callbacks:\n    - {probe}\n")
        with pytest.raises(SystemExit) as stopped:
            main(["analyze", str(tiny_run), "--probes-config", str(extra), "--name", "analysis-kept"])
        assert stopped.value.code == code
        assert last_error_line(capsys).startswith(f"grokkit: error: {message}")
        assert (tiny_run / "analysis-kept" / "summary.json").read_text() == kept
        assert not [path.name for path in tiny_run.iterdir() if path.name.startswith(".")]  # no partial one


@pytest.mark.slow
def test_an_analysis_of_a_name_another_process_computes_is_refused(tiny_run, capsys):
    """Two analyses of one name at once: the second would delete the first's files, and each would replace the
    other's folder with a mixture of both. The second is refused (exit 75), the first's files untouched."""
    staging = tiny_run / ".analysis-busy.partial"
    staging.mkdir()
    (staging / "summary.json").write_text("{}")  # the other process's work so far
    try:
        with held_by_another_process(staging), pytest.raises(SystemExit) as refused:
            main(["analyze", str(tiny_run), "--name", "analysis-busy"])
        assert refused.value.code == 75
        assert last_error_line(capsys) == (
            f"grokkit: error: {tiny_run}: another grokkit analyze --name analysis-busy is computing there (it holds "
            ".analysis-busy.partial's lock); wait for it to end, or give another --name"
        )
        assert (staging / "summary.json").read_text() == "{}" and not (tiny_run / "analysis-busy").exists()
        main(
            ["analyze", str(tiny_run), "--name", "analysis-busy"]
        )  # the other ended: its leftovers are cleared
        assert (
            json.loads((tiny_run / "analysis-busy" / "summary.json").read_text())["analysis"]["steps"][-1]
            == 60
        )
        assert not staging.exists()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@pytest.mark.slow
def test_validate_starts_the_probes_fresh_from_a_full_checkpoint(tiny_run, tmp_path):
    """last.ckpt holds the probes' and the board's state at step 60: validate must not count step 60 twice."""
    assert json.loads((tiny_run / "summary.json").read_text())["run_counter"]["steps"] == [20, 40, 60]
    out = f"--trainer.logger.init_args.save_dir={tmp_path}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        main(
            [
                "validate",
                "--config",
                str(tiny_run / "config.yaml"),
                out,
                "--ckpt_path",
                str(tiny_run / "checkpoints" / "last.ckpt"),
            ]
        )
    summary = json.loads((tmp_path / "tiny" / "version_0" / "validate" / "summary.json").read_text())
    assert summary["run_counter"] == {"step": 60, "steps": [60], "board_points": 1}  # as from weights alone


@pytest.mark.slow
def test_validate_runs_the_probes_on_a_saved_checkpoint_at_its_step(tiny_run, capsys):
    checkpoint = tiny_run / "checkpoints" / "trajectory" / "step=00000020.ckpt"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 20
    training_summary = (tiny_run / "summary.json").read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        main(
            [
                "validate",
                "--config", str(tiny_run / "config.yaml"),
                "--ckpt_path", str(checkpoint),
            ]
        )  # fmt: skip
    summary = json.loads((tiny_run / "validate" / "summary.json").read_text())  # not over the run's own files
    assert summary["val"]["step"] == 20 and summary["weight_norm"]["step"] == 20
    # one table, a row per split and a column per metric (Lightning's repeats them once per dataloader)
    out = capsys.readouterr().out
    table = [line.split("│")[1:-1] for line in out.splitlines() if line.startswith("│")]
    rows = {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in table}
    assert "grokkit validate, step 20" in out and "DataLoader" not in out
    assert list(rows) == [*EVAL_SPLITS, "train"] and rows["train"][1] == ""  # acc, loss; no loss of train
    assert rows["test_inferred_iid"][0] == f"{summary['val']['test_inferred_iid/acc']:.4f}"

    assert summary["grokking"]["step"] == 20
    assert (tiny_run / "summary.json").read_text() == training_summary
    # validate's config.yaml names the checkpoint it scored (a fit's resume of its own run would not)
    assert yaml.safe_load((tiny_run / "validate" / "config.yaml").read_text())["ckpt_path"] == str(checkpoint)
    # the Python API, as a notebook calls it (no `grokkit` command line for the errors to read)
    build_cli(["test", "--config", str(tiny_run / "config.yaml"), "--ckpt_path", str(checkpoint)])
    assert scalars(tiny_run / "test")["test/test_inferred_iid/acc"] == [20]  # logged at the checkpoint's step


def test_unknown_class_path_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_args(tmp_path, "--trainer.callbacks+=plugins.nope.Nope"))
    assert exit_info.value.code == 2
    error = last_error_line(capsys)
    assert error.startswith("grokkit: error: trainer.callbacks: class_path 'plugins.nope.Nope': no module")
    assert "'plugins.nope'" in error and "current directory" in error

    with pytest.raises(SystemExit):
        main(tiny_args(tmp_path, "--trainer.callbacks+=Nope"))
    assert "unknown class 'Nope'" in last_error_line(capsys)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["GrokkingOnset", "stop_split=nope"],
            "[0].init_args.stop_split='nope' (GrokkingOnset) must be one of id_",
        ),
        (
            ["plugins.weight_norm.WeightNorm", "split=nosuch"],
            "[0].init_args.split='nosuch' (WeightNorm) must be one of",
        ),
        (
            ["test_plugins.TopK", "top_k=0"],
            "[0].init_args.top_k=0 (TopK) must lie in [1, 100]",
        ),  # its own range
        (  # refused by its constructor
            ["GrokkingOnset", "test_plugins.Strict", "top_k=0"],
            "[1] (Strict): ValueError: top_k must be >= 1, got 0; its constructor refused its init_args",
        ),
        (  # the second of two: the one refused is named
            ["test_plugins.Strict", "test_plugins.Strict", "top_k=0"],
            "[1] (Strict): ValueError: top_k must be >= 1, got 0; its constructor refused its init_args",
        ),
    ],
)
def test_a_probe_refusing_its_arguments_is_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(ROOT)  # `plugins.` resolves from the repository root
    *probes, setting = args
    with pytest.raises(SystemExit) as exit_info:
        main(
            tiny_args(
                tmp_path, *(f"--trainer.callbacks+={p}" for p in probes), f"--trainer.callbacks.{setting}"
            )
        )
    assert exit_info.value.code == 2
    assert last_error_line(capsys).startswith(f"grokkit: error: trainer.callbacks{message}")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()  # nothing written


def test_a_probe_may_name_itself_after_an_argument_set_after_the_base_constructor():
    assert SplitSize(split="train_inferred").name == "split_size/train_inferred"
    with pytest.raises(ConfigError, match=r"^SplitSize.every_n_steps=0 must lie in \[1,"):
        SplitSize(every_n_steps=0)


def test_entry_point_probes_load_and_a_broken_one_warns(monkeypatch, tmp_path, capsys):
    entries = [
        EntryPoint("weight_norm", "plugins.weight_norm:WeightNorm", registry.GROUP),
        EntryPoint("broken", "grokkit_no_such_module:Probe", registry.GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: [e for e in entries if e.group == group])
    monkeypatch.syspath_prepend(str(ROOT))
    with pytest.warns(UserWarning, match="skipped probe plugin 'broken' = 'grokkit_no_such_module:Probe'"):
        loaded = registry.load_entry_point_probes()
    assert list(loaded) == ["weight_norm"] and loaded["weight_norm"].__name__ == "WeightNorm"

    with pytest.raises(SystemExit):  # once imported, a config can name the class alone
        main(tiny_args(tmp_path, "--trainer.callbacks+=WeightNorm", "--print_config"))
    assert "class_path: plugins.weight_norm.WeightNorm" in capsys.readouterr().out


def test_analyze_refuses_a_directory_without_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", str(tmp_path)])
    assert exit_info.value.code == 2
    assert last_error_line(capsys) == (
        f"grokkit: error: {tmp_path / 'config.yaml'} not found: give a run directory written by `grokkit fit`"
    )


def test_no_warning_without_entry_points():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.load_entry_point_probes()
