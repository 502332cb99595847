"""A real `grokkit fit` as a user runs it: what it prints, the HPARAMS session, and aligned steps."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from grokkit.cli import main
from grokkit.results.plot import memorized_level, plot
from grokkit.train.run_log import METRICS

ROOT = Path(__file__).resolve().parents[1]
PROBES = [
    "GrokkingOnset",
    '{"class_path": "RunClassifier", "init_args": {"bridge_key": "ood/circuit_signal"}}',
    '{"class_path": "LogitLens", "init_args": {"sample_size": 50}}',
]


@pytest.fixture(scope="module")
def fit(tmp_path_factory) -> tuple[Path, list[str]]:
    """A 60-step run with the onset, classifier and logit lens: its directory and its output lines."""
    tmp_path = tmp_path_factory.mktemp("run_log")
    command = [
        sys.executable, "-m", "grokkit", "fit",
        "--config", str(ROOT / "configs/tiny.yaml"),
        f"--data.data_dir={tmp_path / 'data'}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        *(f"--trainer.callbacks+={probe}" for probe in PROBES),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return tmp_path / "runs" / "tiny" / "version_0", (done.stdout + done.stderr).splitlines()


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_a_run_prints_no_noise(fit):
    _, lines = fit
    text = "\n".join(lines)
    for noise in ("Warning", "warn", "Tip", "litlogger", "FLOPs", "Epoch", "deprecated"):
        assert noise not in text, text
    assert any(line.startswith("model: net (Decoder, 27.3 K)") for line in lines), text
    assert any(line.startswith("step ") and "60/60" in line for line in lines), text  # a bar in steps


@pytest.mark.slow
def test_hparams_tab_lists_the_run_with_its_hyperparameters_and_metrics(fit):
    run_dir, _ = fit
    accumulator = events(run_dir)
    plugin = {
        tag: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in accumulator.PluginTagToContent("hparams").items()
    }  # what TensorBoard's HPARAMS tab reads
    metric_tags = [info.name.tag for info in plugin["_hparams_/experiment"].experiment.metric_infos]
    assert metric_tags == list(METRICS)
    hparams = plugin["_hparams_/session_start_info"].session_start_info.hparams
    values = {key: value.string_value or value.number_value for key, value in hparams.items()}
    assert values["model.network"] == "Decoder" and values["model.network.n_layers"] == 2
    assert values["data.phi"] == 3.0 and values["data.n_entities"] == 40 and values["data.hop1_ratio"] == 0
    assert (
        values["model.lr"] == 1e-3 and values["model.weight_decay"] == 0.1 and values["seed_everything"] == 0
    )
    assert values["model.parameters"] == 27264 and values["data.train_items"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    last = {
        tag: accumulator.Scalars(tag)[-1].value for tag in metric_tags if tag in accumulator.Tags()["scalars"]
    }
    assert last["val/test_inferred_iid/acc"] == pytest.approx(summary["val"]["test_inferred_iid/acc"])
    assert last["probe/classification/code"] == summary["classification"]["code"]
    assert {"val/train/acc", "val/test_inferred_ood/acc"} <= set(last)  # t_mem, t_gen: none in 60 steps


@pytest.mark.slow
def test_validation_and_probes_are_logged_at_the_same_step(fit):
    run_dir, _ = fit
    accumulator = events(run_dir)
    steps = {tag: [event.step for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    assert steps["val/test_inferred_iid/acc"] == [20, 40, 60]
    assert steps["probe/logit_lens/iid/bridge_found_any"] == [20, 40, 60]
    assert steps["probe/classification/code"] == [20, 40, 60]
    figures = sorted(path.name for path in (run_dir / "figures").iterdir())
    assert figures[:3] == [
        f"logit_lens_iid_bridge_top1_stage_x_position_step000000{n}.png" for n in (20, 40, 60)
    ]


@pytest.mark.slow
def test_plot_draws_the_runs_curves(fit, capsys):
    run_dir, _ = fit
    main(["plot", str(run_dir)])
    assert capsys.readouterr().out == f"grokkit plot: {run_dir / 'figures' / 'accuracy.png'}\n"
    assert matplotlib.image.imread(run_dir / "figures" / "accuracy.png").shape[:2] == (504, 960)  # 8 x 4.2 in
    # the circuit signal the classifier read is drawn with the accuracies
    labels = plot(run_dir, run_dir / "figures" / "again.png")
    assert "circuit signal: logit_lens ood/circuit_signal" in labels and "test_inferred_iid" in labels


def test_the_t_mem_line_names_the_runs_memorized_level(tmp_path):
    assert memorized_level(tmp_path) == 0.99  # no config: GrokkingOnset's default
    onset = {"class_path": "grokkit.probes.GrokkingOnset", "init_args": {"memorized": 0.95}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [onset]}}))
    assert memorized_level(tmp_path) == 0.95


def test_plot_refuses_a_directory_without_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"{tmp_path}: not a run or sweep directory (no TensorBoard events)" in capsys.readouterr().err
