"""Log-spaced schedules and the metric-triggered hyperparameter switch (through a real tiny run)."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from test_cli import scalars, tiny_args

from grokkit.cli import build_cli, main
from grokkit.errors import ConfigError
from grokkit.train.schedule import SwitchHyperparameters, is_log_spaced


def test_log_spaced_steps():
    assert [s for s in range(1, 1001) if is_log_spaced(s, 4)] == [
        1,
        2,
        3,
        6,
        10,
        18,
        32,
        56,
        100,
        178,
        316,
        562,
        1000,
    ]
    assert not is_log_spaced(0, 4)


def test_a_switch_fires_on_no_nan_and_refuses_a_metric_nobody_logs():
    def validated(**metrics):
        state = SimpleNamespace(fn=TrainerFn.FITTING)
        return SimpleNamespace(state=state, sanity_checking=False, callback_metrics=metrics, global_step=20)

    switch = SwitchHyperparameters(monitor="val/train_inferred/acc", threshold=0.5)
    switch.on_validation_end(validated(**{"val/train_inferred/acc": torch.tensor(float("nan"))}), None)
    assert switch.fired_at_step is None  # no items at phi 0: nothing reached
    with pytest.raises(
        ConfigError,
        match=r"monitor='val/train_inferred/acc' is not a logged metric; name one of val/train/acc",
    ):
        switch.on_validation_end(validated(**{"val/train/acc": torch.tensor(0.3)}), None)
    waiting = SwitchHyperparameters(monitor="train/loss", threshold=0.5)  # logged by training, maybe later
    waiting.on_validation_end(validated(**{"val/train/acc": torch.tensor(0.3)}), None)
    assert waiting.fired_at_step is None


@pytest.mark.slow
def test_switch_changes_weight_decay_once_the_metric_reaches_the_threshold(tmp_path):
    main(
        tiny_args(
            tmp_path,
            "--trainer.max_steps=40",
            "--trainer.callbacks+=grokkit.train.schedule.SwitchHyperparameters",
            "--trainer.callbacks.threshold=0.0",
            "--trainer.callbacks.weight_decay=0.7",
            "--trainer.callbacks.lr_scale=0.5",
            "--trainer.callbacks.betas=[0.9,0.98]",
        )
    )
    curves = scalars(tmp_path / "runs" / "tiny" / "version_0")
    decay = dict(curves["lr-AdamW/decay-weight_decay"])
    lr = dict(curves["lr-AdamW/decay"])
    # fires at the validation of step 20
    assert decay[9] == pytest.approx(0.1) and decay[39] == pytest.approx(0.7)
    assert lr[39] == pytest.approx(lr[9] * 0.5)
    assert [step for step, _ in curves["schedule/switch"]] == [20]
    state = torch.load(tmp_path / "runs/tiny/version_0/checkpoints/last.ckpt", weights_only=False)
    assert {tuple(group["betas"]) for group in state["optimizer_states"][0]["param_groups"]} == {(0.9, 0.98)}


@pytest.mark.slow
def test_a_validation_outside_fit_does_not_fire_the_switch(tmp_path):
    """``grokkit transfer`` validates its start before training: the switch waits for a validation of the fit,
    whose optimizer it changes (it would otherwise be spent on a trainer without one)."""
    switch = [
        "--trainer.callbacks+=grokkit.train.schedule.SwitchHyperparameters",
        "--trainer.callbacks.threshold=0.0",
        "--trainer.callbacks.weight_decay=0.7",
    ]
    # as grokkit transfer validates its start, then fits: one events file, no inference tensors left behind
    logger = [
        "--trainer.logger=grokkit.experiments.analyze.AnalysisLogger",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.inference_mode=false",
    ]
    args = tiny_args(tmp_path, "--trainer.max_steps=20", *switch, *logger)[1:]  # [1:]: without "fit"
    cli = build_cli(args, run=False, save_config=False)
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, SwitchHyperparameters)]
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    assert callback.fired_at_step is None
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert callback.fired_at_step == 20
    decayed = [g for g in cli.trainer.optimizers[0].param_groups if g.get("name") == "decay"]
    assert decayed and all(group["weight_decay"] == 0.7 for group in decayed)


@pytest.mark.slow
def test_a_probe_runs_on_its_own_schedule_during_fit(tmp_path):
    main(tiny_args(tmp_path, "--trainer.max_steps=80", "--trainer.callbacks+=plugins.weight_norm.WeightNorm",
                   "--trainer.callbacks.every_n_steps=40"))  # fmt: skip
    curves = scalars(tmp_path / "runs" / "tiny" / "version_0")
    assert [step for step, _ in curves["probe/weight_norm/total"]] == [20, 60]  # validations every 20 steps
