"""``grokkit sweep`` on Ray Tune, ``grokkit.results`` and ``grokkit compare``, on one real tiny sweep: two
trials, killed after the first has finished, then started again."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import ROOT
from test_concurrency import locked_elsewhere, snapshot

from grokkit.cli import main
from grokkit.errors import ConfigError
from grokkit.experiments import grid
from grokkit.experiments.trial import Trial, not_finished
from grokkit.results import load_run, load_sweep
from grokkit.results.compare import Line, expand_runs, panels_figure, summary_figure

FIRST, SECOND = "phi=3.0", "phi=4.0"


def sweep_command(tmp_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "grokkit", "sweep",
        "--config", str(ROOT / "configs/tiny.yaml"),
        "--grid", "data.phi=[3.0,4.0]",
        "--trainer.max_steps=20", "--trainer.val_check_interval=10",
        f"--data.data_dir={tmp_path / 'data'}",
        "--out", str(tmp_path / "sweep"),
        "--max-concurrent", "1",
    ]  # fmt: skip


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILL the sweep and everything it started (Ray's processes, the trial's fit), as a crash would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    listed = subprocess.run(["ps", "-o", "pid=", "-s", str(process.pid)], capture_output=True, text=True)
    for pid in map(int, listed.stdout.split()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """The sweep, killed as soon as its first trial is done, then run again to the end."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    command, out = sweep_command(tmp_path), tmp_path / "sweep"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    first = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 150
    try:
        while not (out / FIRST / "trial.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first trial did not finish"
            time.sleep(0.05)
        locked = locked_elsewhere(out)  # the second trial is pending or running: the sweep holds its --out
    finally:
        kill_session(first)
    assert locked
    killed = {"first": snapshot(out / FIRST), "second_done": (out / SECOND / "trial.json").exists()}
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    return out, killed, second.stdout


@pytest.mark.slow
def test_a_restarted_sweep_keeps_finished_trials_and_completes(sweep_dir):
    out, killed, restart_output = sweep_dir
    assert json.loads((out / FIRST / "trial.json").read_text())["status"] == "done"
    assert not killed["second_done"]  # killed while the second trial was pending or running
    assert "2 trials (1 finished earlier, kept)" in restart_output
    assert f"{SECOND} started" in restart_output and f"{FIRST} started" not in restart_output
    assert snapshot(out / FIRST) == killed["first"]  # not a byte of the finished trial was rewritten
    for name, phi in ((FIRST, 3.0), (SECOND, 4.0)):
        marker = json.loads((out / name / "trial.json").read_text())
        assert marker["status"] == "done" and marker["niceness"] == os.nice(0)  # not Ray's worker niceness 15
        assert (
            marker["cuda_visible_devices"] == ""
        )  # no GPU reserved: none visible (Ray would leave them all)
        config = (out / name / "config.yaml").read_text()
        assert f"phi: {phi}" in config and "threads: 1" in config  # --cpus-per-trial defaults to 1
        assert (out / name / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_load_run_and_load_sweep_read_the_trials(sweep_dir, tmp_path):
    out, _, _ = sweep_dir
    scalars, summary = load_run(out / FIRST)
    assert list(scalars.columns) == ["step", "tag", "value", "wall_time"]
    iid = scalars[scalars["tag"] == "val/test_inferred_iid/acc"]
    assert len(iid) == 2  # validations every 10 of 20 steps
    assert iid["value"].iloc[-1] == pytest.approx(summary["val"]["test_inferred_iid/acc"])
    table = load_sweep(out)
    assert list(table["trial"]) == [FIRST, SECOND] and list(table["data.phi"]) == [3.0, 4.0]
    assert list(table["status"]) == ["done", "done"]
    assert table["val.test_inferred_iid/acc"].between(0, 1).all() and (table["val.step"] == 20).all()
    table.to_csv(tmp_path / "sweep.csv", index=False)
    assert pd.read_csv(tmp_path / "sweep.csv").shape == table.shape


@pytest.mark.slow
def test_a_sweep_refuses_a_trial_name_its_earlier_run_gave_other_values(sweep_dir, tmp_path, capsys):
    out, _, _ = sweep_dir
    copy = shutil.copytree(out, tmp_path / "sweep")
    plan = json.loads((copy / "sweep.json").read_text())
    plan["trials"][FIRST] = {"data.phi": 3.5}  # two values of one name (by hand: a name is its values)
    (copy / "sweep.json").write_text(json.dumps(plan))
    base = yaml.safe_load((copy / "base.yaml").read_text())
    base["trainer"]["logger"]["init_args"]["save_dir"] = str(copy.resolve())  # the copy's own runs
    (copy / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    command = sweep_command(out.parent)[3:]  # the same base config (its data_dir too) and grid
    command[command.index("--out") + 1] = str(copy)
    with pytest.raises(SystemExit) as refused:
        main([*command, "--dry-run"])
    assert refused.value.code == 2
    assert (
        f"its trial {FIRST} ran with {{'data.phi': 3.5}}, not {{'data.phi': 3.0}}" in capsys.readouterr().err
    )
    plan["trials"] = {"phi=3": {"data.phi": 3}, SECOND: {"data.phi": 4.0}}  # an earlier `--grid data.phi=[3]`
    (copy / "sweep.json").write_text(json.dumps(plan))
    with pytest.raises(SystemExit):
        main([*command, "--dry-run"])
    assert f"trial {FIRST} has the values of its trial phi=3" in capsys.readouterr().err
    (copy / "sweep.json").write_text('{"trials": {')  # cut short (by hand: grokkit writes it atomically)
    with pytest.raises(SystemExit):
        main([*command, "--dry-run"])
    assert "sweep.json is not the sweep.json `grokkit sweep` writes" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_labels_two_sweeps_apart_and_groups_list_values(sweep_dir, tmp_path):
    """Two sweeps whose trials share names keep both (labelled by sweep); a run given twice is refused; a
    list-valued grid key (e.g. model.betas) groups the summary figure's lines."""
    out, _, _ = sweep_dir
    first, second = shutil.copytree(out, tmp_path / "a"), shutil.copytree(out, tmp_path / "b")
    assert sorted(expand_runs([first, second])) == sorted(f"{s}/{t}" for s in "ab" for t in (FIRST, SECOND))
    assert sorted(expand_runs([first])) == [FIRST, SECOND]
    with pytest.raises(ConfigError, match="has the label of another run"):
        expand_runs([first / FIRST, first / FIRST])
    plan = json.loads((second / "sweep.json").read_text())
    plan["trials"] = {name: {**point, "model.betas": [0.9, 0.98]} for name, point in plan["trials"].items()}
    (second / "sweep.json").write_text(json.dumps(plan))
    figure = summary_figure([second], "data.phi", "val.test_inferred_iid/acc")
    assert figure.axes[0].get_legend_handles_labels()[1] == ["model.betas=[0.9, 0.98]"]
    marker = second / FIRST / "trial.json"  # a failed trial's summary is a last validation's: not drawn
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "status": "failed"}))
    (line,) = summary_figure([second], "data.phi", "val.test_inferred_iid/acc").axes[0].get_lines()
    assert list(line.get_xdata()) == [4.0]
    assert (
        summary_figure([second], "data.phi", "val.step")
        .axes[0]
        .get_title()
        .endswith("(1 trial not finished: not drawn)")
    )


@pytest.mark.slow
def test_compare_groups_by_every_sweeps_grid_keys(sweep_dir, tmp_path):
    """A grid key only one of the sweeps has still splits the lines (its column comes after the other sweep's
    summary columns in the joined table)."""
    out, _, _ = sweep_dir
    plain, seeded = shutil.copytree(out, tmp_path / "a"), shutil.copytree(out, tmp_path / "b")
    plan = json.loads((seeded / "sweep.json").read_text())
    plan["trials"] = {name: {**point, "data.seed": 1} for name, point in plan["trials"].items()}
    (seeded / "sweep.json").write_text(json.dumps(plan))
    lines = summary_figure([plain, seeded], "data.phi", "val.step").axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[3.0, 4.0], [3.0, 4.0]]


def written_sweep(sweep_dir: Path, points: dict[str, dict]) -> Path:
    """A sweep directory as ``grokkit sweep`` leaves it for the tables: sweep.json, and each trial done with a
    summary.json whose ``val.train/acc`` is its index / 10."""
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({"base": "base.yaml", "trials": points}))
    for index, name in enumerate(points):
        (sweep_dir / name).mkdir()
        (sweep_dir / name / "trial.json").write_text(json.dumps({"trial": name, "status": "done"}))
        summary = {"val": {"step": 10, "train/acc": index / 10}}
        (sweep_dir / name / "summary.json").write_text(json.dumps(summary))
    return sweep_dir


def test_compare_draws_a_list_valued_grid_key_on_x(tmp_path):
    """``--x model.betas``: each list is one point on x, named by its text (matplotlib read it as a row of
    numbers and raised)."""
    points = {
        f"betas={betas},phi={phi}": {"model.betas": betas, "data.phi": phi}
        for betas in ([0.9, 0.98], [0.9, 0.999])
        for phi in (3.0, 4.0)
    }
    figure = summary_figure([written_sweep(tmp_path / "s", points)], "model.betas", "val.train/acc")
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["data.phi=3.0", "data.phi=4.0"]
    assert [list(line.get_xdata()) for line in lines] == [["[0.9, 0.98]", "[0.9, 0.999]"]] * 2
    assert [list(line.get_ydata()) for line in lines] == [[0.0, 0.2], [0.1, 0.3]]


def test_compare_draws_no_line_per_key_tied_to_x(tmp_path):
    """``--x data.seed`` of a grid over ``data.phi`` and ``data.seed,seed_everything``: a line per phi over the
    seeds, not one point per seed_everything (which takes data.seed's value in every trial)."""
    points = {
        f"phi={phi},seed={seed}": {"data.phi": phi, "data.seed": seed, "seed_everything": seed}
        for phi in (3.0, 4.0)
        for seed in (0, 1)
    }
    sweep = written_sweep(tmp_path / "s", points)
    lines = summary_figure([sweep], "data.seed", "val.train/acc").axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["data.phi=3.0", "data.phi=4.0"]
    assert [list(line.get_xdata()) for line in lines] == [[0, 1], [0, 1]]
    lines = summary_figure([sweep], "data.phi", "val.train/acc").axes[0].get_lines()
    assert [line.get_label() for line in lines] == [
        "data.seed=0, seed_everything=0",
        "data.seed=1, seed_everything=1",
    ]
    with pytest.raises(
        ConfigError, match=r"--x val.train/acc: not a grid key of the sweeps; choose one of data"
    ):
        summary_figure([sweep], "val.train/acc", "val.train/acc")  # a summary column: a line per trial


@pytest.mark.slow
def test_a_trial_stopped_by_max_time_is_unfinished_and_resumes_under_a_longer_one(tmp_path):
    """Lightning ends a fit that ``trainer.max_time`` stopped with exit code 0: the trial is still unfinished,
    and run again under a base config with another max_time (as a sweep rerun gives it) it resumes."""
    sweep_dir, base = tmp_path / "sweep", yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    logger = {"save_dir": str(sweep_dir), "name": "", "version": "", "default_hp_metric": False}
    base["trainer"].update(
        max_steps=1500,
        val_check_interval=500,
        max_time="00:00:00:01",
        enable_progress_bar=False,
        logger={"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": logger},
    )
    base["data"]["data_dir"] = str(tmp_path / "data")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    trial = Trial("phi=3.0", {"data.phi": 3.0}, sweep_dir, tmp_path / "base.yaml", 1, str(ROOT))
    assert trial.run()["status"] == "unfinished"
    assert not_finished([trial], 1) == (
        "1 of 1 trials did not finish (see RUN/fit.log): phi=3.0: trainer.max_time stopped them; give a longer "
        "--trainer.max_time to resume them"
    )
    base["trainer"]["max_time"] = None
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    assert trial.run()["status"] == "done"
    assert json.loads((trial.run_dir / "summary.json").read_text())["val"]["step"] == 1500
    assert "Restored all states" in (trial.run_dir / "fit.log").read_text()


@pytest.mark.slow
def test_a_trial_whose_config_the_fit_refuses_is_not_advised_to_resume(tmp_path):
    """A model that cannot be built (33 wide, 2 heads) fails its trial with exit code 2: running the same
    command again would fail it again."""
    base = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    base["data"]["data_dir"], base["trainer"]["logger"] = str(tmp_path / "data"), False
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    trial = Trial(
        "d_model=33", {"model.network.init_args.d_model": 33}, tmp_path, tmp_path / "base.yaml", 1, "."
    )
    with pytest.raises(RuntimeError, match="exited with 2"):
        trial.run()
    assert not_finished([trial], 1) == (
        "1 of 1 trials did not finish (see RUN/fit.log): d_model=33: their config was refused (exit code 2); fix "
        "it: resuming cannot help"
    )


def test_a_sweep_refuses_an_out_whose_sweep_has_other_axes(tmp_path, capsys):
    """``phi=3.0,seed=0`` would train ``phi=3.0``'s config again: refused before anything is written."""
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"trials": {"phi=3.0": {"data.phi": 3.0}}}))
    sweep = ["sweep", "--config", str(ROOT / "configs/tiny.yaml"), "--out", str(out), "--dry-run"]
    with pytest.raises(SystemExit) as refused:
        main([*sweep, "--grid", "data.phi=[3.0]", "--grid", "data.seed=[0,1]", f"--data.data_dir={tmp_path}"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"grokkit: error: {out} holds a sweep over data.phi, not data.phi, data.seed: its trials and these "
        "would not be one grid; use another --out"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "how",
    [[], ["--panels"], ["--x", "data.phi", "--y", "val.test_inferred_iid/acc"]],
    ids=["tags", "panels", "x-y"],
)
def test_compare_draws_a_png_and_writes_tensorboard(sweep_dir, tmp_path, how):
    out, _, _ = sweep_dir
    main(["compare", str(out), "--out", str(tmp_path / "fig.png"), "--logdir", str(tmp_path / "tb"), *how])
    height, width, _ = matplotlib.image.imread(tmp_path / "fig.png").shape
    assert height > 300 and width > 500
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert events.Tags()["images"] == ["compare/fig"]


@pytest.mark.parametrize(
    "bad, expected",
    [
        (["--grid", "data.phee=[1.0]"], "grid key data.phee is not a config key"),
        (["--grid", "data.phi=[9.0,abc]"], "grid data.phi=abc"),
        (["--grid", "model.lr=[0.001,-0.1]"], "grid model.lr=-0.1: model.lr=-0.1 must lie in (0, 10]"),
        (["--grid", "data.phi=[3.0]", "--max-concurrent", "0"], "--max-concurrent must be at least 1"),
        (["--grid", "data.phi=[9,9.0]"], "--grid data.phi: value 9 (as 9.0) is given twice"),
        (["--grid", "data.phi=[]"], "--grid data.phi: the list of values is empty"),
        (["--grid", "data.phi=9.0"], "--grid data.phi: the values must be a list"),
        ([], "no grid"),
        (["--grid", "threads=[1,2]", "--dry-run"], "grid key threads: a trial's torch threads are the CPUs"),
        (
            ["--grid", "data.phi=[3.0]", "--threads", "4", "--cpus-per-trial", "1", "--dry-run"],
            "--threads 4 and --cpus-per-trial 1: a trial's torch threads are its CPUs",
        ),
        (
            ["--grid", "data.phi=[3.0]", "--trainer.logger.init_args.name=x", "--dry-run"],
            "--trainer.logger.init_args.name: grokkit sweep sets the logger itself",
        ),
        (
            ["--grid", "trainer.accelerator=[cpu,gpu]", "--dry-run"],
            "trainer.accelerator=gpu (trial accelerator=gpu) with --gpus-per-trial 0: a trial that reserves no GPU",
        ),
    ],
)
def test_bad_grids_are_refused_before_any_trial(tmp_path, capsys, bad, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--config", str(ROOT / "configs/tiny.yaml"), "--out", str(tmp_path / "sweep"), *bad])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("grokkit: error: ") and expected in error
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_says_when_its_trials_leave_this_machines_gpus_unused(tmp_path, capsys, monkeypatch):
    """A trial that reserves no GPU sees none: a sweep on a GPU machine without --gpus-per-trial trains on the
    CPU, and says so (no GPU here: torch is told it has two)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    sweep = ["sweep", "--config", str(ROOT / "configs/tiny.yaml"), "--out", str(tmp_path / "sweep")]
    main([*sweep, "--grid", "data.phi=[3.0]", f"--data.data_dir={tmp_path / 'data'}", "--dry-run"])
    assert "the trials see none of this machine's 2 GPU(s) and train on the CPU" in capsys.readouterr().out
    main(
        [
            *sweep,
            "--grid",
            "data.phi=[3.0]",
            f"--data.data_dir={tmp_path / 'data'}",
            "--dry-run",
            "--gpus-per-trial",
            "0.5",
        ]
    )
    assert "GPU" not in capsys.readouterr().out


def test_a_grid_reads_scientific_notation_as_numbers(tmp_path, capsys):
    """``1e-3`` (a string in YAML 1.1) is 0.001 in a --grid flag and in a file's sweep section: given beside
    0.001 it is one config under two names, refused; alone it names its trial as 0.001 does."""
    overlay = tmp_path / "lr.yaml"
    overlay.write_text("sweep:\n  grid:\n    model.lr: [1e-3, 0.001]\n")
    sweep = ["sweep", "--config", str(ROOT / "configs/tiny.yaml"), "--out", str(tmp_path / "sweep")]
    for grid_source in (["--grid", "model.lr=[1e-3,0.001]"], ["--config", str(overlay)]):
        with pytest.raises(SystemExit) as refused:
            main([*sweep, *grid_source, "--dry-run"])
        assert refused.value.code == 2
        assert "model.lr: value 0.001 is given twice" in capsys.readouterr().err
    assert grid.trial_points([grid.parse_flag("model.lr=[1e-3,2E-3]")]) == {
        "lr=0.001": {"model.lr": 0.001},
        "lr=0.002": {"model.lr": 0.002},
    }
    # a sweep of older grokkit kept 1e-3 as text, under the name lr=1e-3: its trials keep their names
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"trials": {"lr=1e-3": {"model.lr": "1e-3"}}}))
    main([*sweep, "--grid", "model.lr=[1e-3,2e-3]", f"--data.data_dir={tmp_path / 'data'}", "--dry-run"])
    assert capsys.readouterr().out.split("\n")[1:3] == ["  lr=1e-3", "  lr=0.002"]


def test_a_dry_run_refuses_a_dataset_that_cannot_be_built_and_writes_nothing(tmp_path, capsys):
    sweep = ["sweep", "--config", str(ROOT / "configs/tiny.yaml"), "--dry-run", f"--out={tmp_path / 'sweep'}"]
    data = f"--data.data_dir={tmp_path / 'data'}"
    main([*sweep, "--grid", "data.phi=[3,4]", data])
    assert "2 trials" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([*sweep, "--grid", "data.phi=[3,5000]", data])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(
        "grokkit: error: trial phi=5000: data.phi=5000.0 asks for 950000 training two-hop"
    )
    assert list(tmp_path.iterdir()) == []  # no dataset, no sweep directory


def test_a_grid_over_an_injection_key_sets_it_inside_the_injection(tmp_path, capsys):
    sweep = ["sweep", "--config", str(ROOT / "configs/tiny.yaml"), f"--out={tmp_path / 'sweep'}"]
    sweep += [
        "--grid=data.injection.n_new=[10,20]",
        "--data.injection={n_new: 10, replay_size: 50, eval_size: 10}",
    ]
    main([*sweep, "--dry-run", f"--data.data_dir={tmp_path / 'data'}"])
    assert "2 trials" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the tiny graph has no room for new facts: refused before any trial
        main([*sweep, f"--data.data_dir={tmp_path / 'data'}"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("grokkit: error: trial n_new=10: data.injection.n_new=10 needs 5 free relation")
    assert not (tmp_path / "sweep").exists()


def test_the_csv_command_refuses_a_directory_as_out_and_a_directory_without_a_run(tmp_path):
    cases = [
        ((tmp_path, tmp_path), f"OUT {tmp_path}: is a directory; give a file name inside it"),
        ((tmp_path, tmp_path / "x.csv"), f"{tmp_path}: not a run or sweep directory (no TensorBoard events)"),
        ((ROOT / "README.md", tmp_path / "x.csv"), f"{ROOT / 'README.md'}: a file, not a directory"),
    ]
    for args, message in cases:
        command = [sys.executable, "-m", "grokkit.results", *map(str, args)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.startswith(f"grokkit: error: {message}"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_compare_refuses_a_figure_name_of_no_format_before_reading_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(tmp_path / "no-run"), "--out", str(tmp_path / "fig.txt")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        error
        == f"grokkit: error: --out {tmp_path / 'fig.txt'}: no figure format 'txt'; end the name in .png, .pdf or .svg "
        "(or another format matplotlib writes)"
    )


def test_tied_keys_take_one_value_and_name_the_trials():
    axes = grid.merge(
        [
            grid.parse_flag("data.phi=[7.2,9.0]"),
            grid.parse_flag("data.seed=[5]"),
            grid.parse_flag("data.seed,seed_everything=[0,1]"),  # replaces the data.seed axis
        ]
    )
    points = grid.trial_points(axes)
    assert list(points) == ["phi=7.2,seed=0", "phi=7.2,seed=1", "phi=9.0,seed=0", "phi=9.0,seed=1"]
    assert points["phi=9.0,seed=1"] == {"data.phi": 9.0, "data.seed": 1, "seed_everything": 1}
    with pytest.raises(ConfigError, match="given twice"):
        grid.parse_flag("data.phi=[9.0,9.0]")


def test_an_unfinished_trial_resumes_from_its_last_checkpoint(tmp_path):
    trial = Trial(
        "phi=3.0", {"data.phi": 3.0}, tmp_path, tmp_path / "base.yaml", threads=1, cwd=str(tmp_path)
    )
    (tmp_path / "base.yaml").write_text("trainer: {max_time: '00:01:00:00'}")
    trial.run_dir.mkdir()
    (trial.run_dir / "fit.log").write_text("")  # a fit killed before it wrote its config.yaml
    fresh = ["--config", str(tmp_path / "base.yaml"), "--data.phi", "3.0"]
    assert trial.fit_args() == [*fresh, "--trainer.logger.init_args.name", "phi=3.0"]
    assert not trial.run_dir.exists()  # cleared: it starts over
    (trial.run_dir / "checkpoints").mkdir(parents=True)
    (trial.run_dir / "config.yaml").write_text("")
    (trial.run_dir / "events.out.tfevents.1").write_text("")
    resume = ["--config", str(trial.run_dir / "config.yaml"), "--trainer.max_time", "00:01:00:00"]
    resume += ["--ckpt_path", "last"]  # under the sweep's max_time: a longer one resumes a trial it stopped
    assert trial.fit_args() == resume  # grokkit fit decides: from step 0, or refused past a last.ckpt
    assert (trial.run_dir / "events.out.tfevents.1").is_file()  # nothing deleted here
    (trial.run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert trial.fit_args() == resume


def test_the_phi_sweep_config_spans_eight_trials(capsys):
    main(["sweep", "--config", str(ROOT / "configs/default.yaml"), "--config", str(ROOT / "configs/sweeps/phi_cpu.yaml"), "--dry-run"])  # fmt: skip
    listed = capsys.readouterr().out.split()
    assert "8" in listed and "phi=7.2,seed=0" in listed and "phi=12.6,seed=1" in listed


def test_a_series_of_one_point_is_drawn_as_a_marker():
    one, two = (pd.DataFrame({"step": steps, "value": [0.5] * len(steps)}) for steps in ([10], [10, 20]))
    lines = (
        panels_figure({"acc": [Line("one", one), Line("two", two)]}, accuracy_axis=True).axes[0].get_lines()
    )
    assert [line.get_marker() for line in lines] == ["o", "None"]


def test_a_trial_of_a_grid_over_max_time_resumes_under_its_own(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"trainer": {"max_time": None}}))
    for point, max_time in (
        ({"trainer.max_time": "00:00:00:02"}, "00:00:00:02"),
        ({"data.phi": 3.0}, "null"),
    ):
        trial = Trial("t", point, tmp_path, tmp_path / "base.yaml", 1, ".")
        trial.run_dir.mkdir(exist_ok=True)
        (trial.run_dir / "config.yaml").write_text("")  # a fit that started: it resumes
        args = trial.fit_args()
        assert args[args.index("--trainer.max_time") + 1] == max_time and args[-2:] == ["--ckpt_path", "last"]
