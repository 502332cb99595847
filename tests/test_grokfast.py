"""Grokfast's EMA gradient filter on a known gradient sequence (its exact resume is in test_resume.py)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from grokkit.errors import ConfigError
from grokkit.train.grokfast import Grokfast


def filtered(callback: Grokfast, module: nn.Module, grad: float) -> float:
    module.weight.grad = torch.full_like(module.weight, grad)
    callback.on_before_optimizer_step(SimpleNamespace(), module, None)
    return module.weight.grad[0, 0].item()


def test_filter_on_a_known_gradient_sequence():
    module, callback = nn.Linear(2, 2, bias=False), Grokfast(alpha=0.5, lamb=2.0)
    # mu: 0.5 * 4 = 2; then 0.5 * 2 + 0.5 * 0 = 1; then 0.5 * 1 + 0.5 * -2 = -0.5
    assert filtered(callback, module, 4.0) == 4.0 + 2.0 * 2.0
    assert filtered(callback, module, 0.0) == 0.0 + 2.0 * 1.0
    assert filtered(callback, module, -2.0) == -2.0 + 2.0 * -0.5
    state = callback.state_dict()["averages"]
    assert list(state) == ["weight"] and torch.equal(state["weight"], torch.full((2, 2), -0.5))

    restored = Grokfast(alpha=0.5, lamb=2.0)
    restored.load_state_dict(callback.state_dict())
    assert filtered(restored, module, 1.0) == filtered(callback, module, 1.0) == 1.0 + 2.0 * 0.25


def test_a_non_finite_gradient_leaves_the_average_clean():
    module, callback = nn.Linear(2, 2, bias=False), Grokfast(alpha=0.5, lamb=1.0)
    filtered(callback, module, 2.0)  # mu = 1
    assert torch.isnan(torch.tensor(filtered(callback, module, float("nan"))))  # the step is stopped/skipped
    assert filtered(callback, module, 0.0) == 0.5  # mu = 0.5 * 1 + 0.5 * 0, the NaN never entered it
    # one infinite entry: the step is skipped, and no entry's average moves (its finite ones neither)
    module.weight.grad = torch.tensor([[4.0, 4.0], [4.0, float("inf")]])
    callback.on_before_optimizer_step(SimpleNamespace(), module, None)
    assert torch.equal(callback.averages["weight"], torch.full((2, 2), 0.5))


@pytest.mark.parametrize("kwargs", [{"alpha": 1.0}, {"alpha": -0.1}, {"lamb": -1.0}, {"lamb": float("nan")}])
def test_settings_are_checked(kwargs):
    with pytest.raises(ConfigError, match="Grokfast"):
        Grokfast(**kwargs)


def test_a_scalar_parameter_is_filtered_too():
    module = nn.Module()
    module.weight = nn.Parameter(torch.tensor(1.0))
    callback = Grokfast(alpha=0.5, lamb=1.0)
    module.weight.grad = torch.tensor(2.0)
    callback.on_before_optimizer_step(SimpleNamespace(), module, None)
    assert module.weight.grad.item() == 3.0  # 2 + 1 x (0.5 x 2)


@pytest.mark.slow
def test_a_resume_with_another_lamb_filters_on_from_the_saved_averages(tmp_path):
    """The averages are saved under one name whatever alpha and lamb are, and a checkpoint of older grokkit,
    which named them by alpha and lamb, still gives them back."""
    from test_cli import tiny_args

    from grokkit.cli import build_cli, main

    with_grokfast = ["--trainer.max_steps=10", "--trainer.callbacks+=grokkit.train.grokfast.Grokfast"]
    main(tiny_args(tmp_path, *with_grokfast))
    run = tmp_path / "runs" / "tiny" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)["callbacks"]["Grokfast"]["averages"]
    older = torch.load(last, weights_only=False)
    older["callbacks"] = {
        "Grokfast{'alpha': 0.98, 'lamb': 2.0}": older["callbacks"].pop("Grokfast"),
        **older["callbacks"],
    }
    torch.save(older, run / "older.ckpt")
    for checkpoint in (last, run / "older.ckpt"):
        args = tiny_args(tmp_path, *with_grokfast, "--trainer.callbacks.lamb=1.0")[1:]
        cli = build_cli(args, run=False, save_config=False)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint)  # at max_steps: restores
        (grokfast,) = [c for c in cli.trainer.callbacks if isinstance(c, Grokfast)]
        assert grokfast.lamb == 1.0 and saved.keys() == grokfast.averages.keys()
        assert all(torch.equal(saved[name], grokfast.averages[name]) for name in saved)


def test_a_run_takes_one_filter(tmp_path, capsys):
    from test_cli import tiny_args

    from grokkit.cli import main

    filters = ["--trainer.callbacks+=grokkit.train.grokfast.Grokfast"] * 2
    with pytest.raises(SystemExit) as refused:
        main(tiny_args(tmp_path, *filters, "--trainer.callbacks.lamb=1.0"))
    assert refused.value.code == 2 and not (tmp_path / "runs").exists()
    assert (
        "grokkit: error: trainer.callbacks[0] and [1]: 2 Grokfast filters; a run takes one"
        in capsys.readouterr().err
    )
