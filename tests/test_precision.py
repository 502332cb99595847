"""Gradient clipping under each precision: grokkit's fused AdamW meets Lightning's mixed-precision plugins."""

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from test_cli import ROOT, tiny_args

from grokkit.cli import build_cli, main
from grokkit.errors import NonFiniteError
from grokkit.models import Decoder
from grokkit.train.losses import item_losses
from grokkit.train.module import GrokModule
from grokkit.train.optim import clip_gradients


def module_with_gradients(trainer: L.Trainer) -> tuple[GrokModule, torch.optim.Optimizer]:
    """A small decoder's module on ``trainer``, with the gradients of one batch and its fused AdamW."""
    torch.manual_seed(0)
    module = GrokModule(
        lambda vocab, length: Decoder(vocab, length, d_model=16, n_heads=2, n_layers=1), 20, 5
    )
    module.trainer = trainer
    items = torch.randint(0, 20, (8, 5))
    inputs, targets, positions = module.net.training_io(items, True)
    item_losses(module.net(inputs, positions=positions), targets).mean().backward()
    return module, module.configure_optimizers()["optimizer"]


def gradient_norm(module: GrokModule) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.net.parameters()])).item()


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_clipping_cuts_the_gradient_norm_as_torch_does(precision):
    """Under bf16-mixed too, where Lightning's own clipping refuses a fused optimizer; both clip the optimizer's
    parameters in its groups' order, as Lightning's 32-true clipping does."""
    module, optimizer = module_with_gradients(L.Trainer(precision=precision, logger=False))
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in parameters]
    for ref, p in zip(reference, parameters, strict=True):
        ref.grad = p.grad.clone()
    assert gradient_norm(module) > 0.01
    clip_gradients(module, optimizer, 0.01, None)
    torch.nn.utils.clip_grad_norm_(reference, 0.01)
    assert gradient_norm(module) == pytest.approx(0.01, rel=1e-4)
    assert all(torch.equal(p.grad, ref.grad) for p, ref in zip(parameters, reference, strict=True))


@pytest.mark.slow
def test_under_16_mixed_hooks_and_clipping_see_the_true_gradients(tmp_path):
    """16-mixed's loss scaling, with a real gradient scaler (Lightning makes one on a GPU only, so it is given
    here): the gradients are unscaled right after the backward, so the hooks before the step (Grokfast, the
    non-finite check) read them at their true size, and the clipping cuts their true norm."""
    before_step, after_step = [], []

    class GradientNorms(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            before_step.append(gradient_norm(pl_module))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            after_step.append(gradient_norm(pl_module))

    scaled = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=1024.0))
    trainer = L.Trainer(
        plugins=[scaled], gradient_clip_val=0.05, max_steps=4, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, limit_val_batches=0, callbacks=[GradientNorms()],
    )  # fmt: skip
    tiny = ["--config", str(ROOT / "configs/tiny.yaml"), f"--data.data_dir={tmp_path / 'data'}"]
    cli = build_cli(tiny, run=False, save_config=False)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    assert len(before_step) == 4 and all(0.05 < n < 20 for n in before_step)  # scaled, they would be ~1,000x
    assert all(n == pytest.approx(0.05, rel=1e-3) for n in after_step)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("init_scale", "growth_interval", "final_scale"),
    [(2.0**10, 2000, 2.0**10), (2.0**10, 1, 2.0**14), (2.0**60, 2000, 2.0**56)],
)
def test_the_ema_stays_where_the_gradient_scaler_skips_a_step(
    tmp_path, init_scale, growth_interval, final_scale
):
    """16-mixed with an EMA: a step the scaler skips (2^60 overflows every fp16 gradient of these four steps,
    halving the scale each time) leaves the weights, and with them the EMA and its count, as they were; a step
    it takes moves them, also when it then raises its scale (growth_interval 1 doubles it after each step)."""
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=growth_interval)
    scaled = MixedPrecision("16-mixed", "cpu", scaler)
    trainer = L.Trainer(
        plugins=[scaled], max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0,
    )  # fmt: skip
    tiny = ["--config", str(ROOT / "configs/tiny.yaml"), f"--data.data_dir={tmp_path / 'data'}"]
    cli = build_cli([*tiny, "--model.ema_decay=0.9"], run=False, save_config=False)
    initial = [p.detach().clone() for p in cli.model.net.parameters()]
    trainer.fit(cli.model, datamodule=cli.datamodule)
    moved = any(not torch.equal(p, q) for p, q in zip(cli.model.net.parameters(), initial, strict=True))
    skipped = final_scale < init_scale
    assert scaler.get_scale() == final_scale
    assert moved != skipped and int(cli.model.ema.n_averaged) == (0 if skipped else 4)


@pytest.mark.slow
def test_a_bf16_mixed_fit_with_gradient_clipping_trains_through_the_cli(tmp_path):
    """The paper configs' GPU setting (bf16-mixed, gradient_clip_val 1.0) through the CLI, on the CPU."""
    main(
        tiny_args(
            tmp_path,
            "--trainer.precision=bf16-mixed",
            "--trainer.gradient_clip_val=1.0",
            "--trainer.max_steps=3",
        )
    )
    saved = torch.load(
        tmp_path / "runs/tiny/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )
    assert saved["global_step"] == 3


class PoisonLoss(L.Callback):
    """The loss the non-finite check reads turns NaN at ``step`` (the gradients stay finite: the scaler steps);
    records the weights before that step."""

    def __init__(self, step: int) -> None:
        self.step, self.before = step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self.before = [p.detach().clone() for p in pl_module.net.parameters()]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # runs before the module's check
        if trainer.global_step == self.step:
            pl_module._step_loss = torch.tensor(float("nan"))


def test_under_16_mixed_a_bad_loss_read_late_masks_every_step_after_it(tmp_path, monkeypatch):
    """16-mixed with an EMA and the check read every 50 steps, as on a GPU: the watch's mask joins the scaler's
    inside each fused step, so the step with a NaN loss and every one after it leave the weights and the EMA
    alone until the read at the end names it; the scaler's scale is never read back (no host read)."""
    reads = []
    monkeypatch.setattr(torch.amp.GradScaler, "get_scale", lambda self: reads.append(1) or 1.0)
    scaled = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=1024.0))
    poison = PoisonLoss(step=2)
    trainer = L.Trainer(
        plugins=[scaled], max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, callbacks=[poison],
    )  # fmt: skip
    tiny = ["--config", str(ROOT / "configs/tiny.yaml"), f"--data.data_dir={tmp_path / 'data'}"]
    cli = build_cli(
        [*tiny, "--model.ema_decay=0.9", "--model.nonfinite_check_every=50"], run=False, save_config=False
    )
    with pytest.raises(NonFiniteError, match="non-finite loss at step 2"):
        trainer.fit(cli.model, datamodule=cli.datamodule)
    assert all(torch.equal(p, q) for p, q in zip(cli.model.net.parameters(), poison.before, strict=True))
    assert int(cli.model.ema.n_averaged) == 2 and not reads  # steps 0 and 1 only
