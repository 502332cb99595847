"""``grokkit study`` end to end on a tiny setting: five regimes, one seed, a few steps each, then the table and
the figure, and ``--report-only`` rebuilding them from the runs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import yaml
from test_cli import ROOT

from grokkit.cli import main
from grokkit.experiments.study import BASES, HE_LABELS, report
from grokkit.probes.classifier import LABELS
from grokkit.results.runs import TRIAL_MARKER

TINY = {  # configs/tiny.yaml's sizes, on the study's recursive model
    "trainer": {"max_steps": 20, "val_check_interval": 10, "log_every_n_steps": 10},
    "model": {"network": {"init_args": {"d_model": 32, "H_cycles": 1, "L_cycles": 1}}},
    "data": {"n_entities": 40, "n_relations": 10, "out_degree": 5, "phi": 3.0, "eval_size": 200, "batch_size": 64},
}  # fmt: skip


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("study")
    overlay = tmp_path / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "data_dir": str(tmp_path / "data")}}))
    out = tmp_path / "study"  # given relative, as `make study` gives it: the trials' markers must land there
    command = [sys.executable, "-m", "grokkit", "study", "--seeds", "0", "--out", "study"]
    command += ["--config", str(overlay), "--max-concurrent", "1"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "grokkit study: 5 runs in " in done.stdout
    timing = (out / "study.json").read_text()
    assert json.loads(timing)["minutes"] > 0
    again = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True
    )  # every trial done: no training
    assert again.returncode == 0 and "grokkit study: 5 runs, " in again.stdout, again.stderr[-3000:]
    assert (out / "study.json").read_text() == timing  # the wall time of the run that trained stays
    return out


@pytest.mark.slow
def test_study_writes_the_table_and_the_figure_for_every_regime(study_dir):
    table = pd.read_csv(study_dir / "table.csv")
    assert list(table["regime"]) == list(HE_LABELS) and (table["seed"] == 0).all()
    assert list(table["he_label"]) == list(HE_LABELS.values())
    assert (table["status"] == "done").all() and (table["last_step"] == 20).all()
    assert table["grokkit_label"].isin(LABELS).all()
    assert table[["ood_acc_end", "ood_acc_max", "circuit_max"]].stack().between(0, 1).all()
    assert (table["ood_acc_max"] >= table["ood_acc_end"]).all()
    assert (table["minutes"] > 0).all()  # each trial's wall time, from its trial.json
    markdown = (study_dir / "table.md").read_text().splitlines()
    assert markdown[0].startswith("| regime | seed |") and len(markdown) == 2 + len(HE_LABELS)
    assert all(f"| {regime} | 0 |" in "\n".join(markdown) for regime in HE_LABELS)
    height, width, _ = matplotlib.image.imread(study_dir / "study.png").shape
    assert width > 4 * height  # five panels in a row
    for regime in HE_LABELS:  # one graph for all regimes: the seed's, only the augmentation differs
        config = yaml.safe_load((study_dir / f"regime={regime},seed=0" / "config.yaml").read_text())
        overlay = yaml.safe_load((ROOT / "configs/study" / f"{regime}.yaml").read_text())["data"]
        assert config["data"]["seed"] == 0 and config["seed_everything"] == 0
        assert {key: config["data"][key] for key in overlay} == overlay
        assert config["model"]["network"]["class_path"] == "grokkit.models.Recursive"


@pytest.mark.slow
def test_report_only_rebuilds_the_same_table(study_dir):
    written = (study_dir / "table.csv").read_text()
    for name in ("table.csv", "table.md", "study.png"):
        (study_dir / name).unlink()
    main(["study", "--out", str(study_dir), "--report-only"])
    assert (study_dir / "table.csv").read_text() == written
    assert (study_dir / "table.md").is_file() and (study_dir / "study.png").is_file()


@pytest.mark.slow
def test_only_a_finished_run_agrees_with_he_et_al(study_dir, tmp_path):
    study = Path(shutil.copytree(study_dir, tmp_path / "study"))
    run = study / "regime=natural,seed=0"
    summary = json.loads((run / "summary.json").read_text())
    summary["classification"]["label"] = "real_grokking"  # He et al.'s label for the natural regime
    (run / "summary.json").write_text(json.dumps(summary))
    assert report(study).set_index("regime").loc["natural", "agrees"]
    marker = json.loads((run / TRIAL_MARKER).read_text())
    # failed: its label is a last validation's
    (run / TRIAL_MARKER).write_text(json.dumps({**marker, "status": "failed"}))
    assert not report(study).set_index("regime").loc["natural", "agrees"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--report-only"], "no sweep.json"),
        (["--seeds", "0", "0"], "given twice"),
        (["--grid", "a=[1]"], "no --grid"),
    ],
    ids=["report-only-of-nothing", "repeated-seed", "grid"],
)
def test_bad_study_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("grokkit: error:") and message in err and not list(tmp_path.iterdir())


def test_report_only_refuses_a_sweep_that_is_not_a_study(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text(json.dumps({"trials": {"phi=3.0": {"data.phi": 3.0}}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--out", str(tmp_path), "--report-only"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"grokkit: error: {tmp_path}: its trial phi=3.0 is not a study's (regime=REGIME,seed=N); give a "
        "directory written by `grokkit study`"
    )
    assert [path.name for path in tmp_path.iterdir()] == ["sweep.json"]


def test_the_regimes_are_he_et_al_s_at_either_scale():
    """The study's overlays carry He et al.'s regime numbers (configs/he2026), and both bases exist."""
    he = {regime: ROOT / f"configs/he2026/{regime}.yaml" for regime in HE_LABELS}
    for regime in HE_LABELS:
        study = yaml.safe_load((ROOT / "configs/study" / f"{regime}.yaml").read_text())["data"]
        paper = yaml.safe_load(he[regime].read_text())["data"]
        assert study == {key: paper[key] for key in study}
    assert all(base.is_file() for base in BASES.values())
