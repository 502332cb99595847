"""``model.compile``: the compiled training forward computes what the eager network computes; ``auto`` leaves
a CPU eager and survives a compiler that fails."""

import pytest
import torch
from test_cli import tiny_args

from grokkit.cli import build_cli
from grokkit.errors import ConfigError
from grokkit.models import Decoder
from grokkit.train.compiling import TrainingForward
from grokkit.train.losses import item_losses
from grokkit.train.module import GrokModule

VOCAB = 30
ITEMS = torch.tensor([[2, 20, 21, 5, 1], [3, 22, 23, 7, 1], [4, 20, 6, 1, 0], [8, 24, 25, 9, 1]])


def network(vocab_size: int, item_len: int) -> Decoder:
    return Decoder(vocab_size, item_len, d_model=32, n_heads=4, n_layers=2)


def compiled_or_skip(module: GrokModule, inputs: torch.Tensor) -> torch.Tensor:
    """Run the compiled forward once; a machine without a working compiler skips instead of failing."""
    try:
        return module.train_forward(inputs)
    except Exception as error:  # inductor reports a missing compiler in several exception types
        pytest.skip(f"torch.compile does not work on this machine: {type(error).__name__}: {error}")


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "mode"), [(True, None), ("reduce-overhead", "reduce-overhead")])
def test_compiled_training_forward_matches_eager_outputs_and_gradients(monkeypatch, setting, mode):
    """``reduce-overhead`` is torch.compile's mode of that name (CUDA graphs on a GPU; on this CPU, inductor's
    code as for ``true``)."""
    compile_calls, compile = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda *a, **kw: compile_calls.append(kw) or compile(*a, **kw))
    torch.manual_seed(0)
    module = GrokModule(network, vocab_size=VOCAB, item_len=5, compile=setting)
    assert module.eval_net is module.net  # evaluation stays eager
    inputs, targets = module.net.inputs_and_targets(ITEMS)

    compiled_logits = compiled_or_skip(module, inputs)
    assert module.train_forward.compiled is not None and [call["mode"] for call in compile_calls] == [mode]
    # The compiled wrapper is a plain attribute: checkpoints keep the eager module's keys.
    assert module.state_dict().keys() == GrokModule(network, vocab_size=VOCAB, item_len=5).state_dict().keys()
    compiled_loss = item_losses(compiled_logits, targets).mean()
    compiled_loss.backward()
    compiled_grads = [p.grad.clone() for p in module.net.parameters()]
    module.net.zero_grad(set_to_none=True)

    eager_logits = module.eval_net(inputs)
    eager_loss = item_losses(eager_logits, targets).mean()
    eager_loss.backward()

    torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for compiled_grad, parameter in zip(compiled_grads, module.net.parameters(), strict=True):
        torch.testing.assert_close(compiled_grad, parameter.grad, rtol=1e-4, atol=1e-6)


def test_auto_trains_eagerly_on_a_cpu_and_is_the_default():
    torch.manual_seed(0)
    module = GrokModule(network, vocab_size=VOCAB, item_len=5)
    assert module.hparams.compile == "auto"
    inputs, _ = module.net.inputs_and_targets(ITEMS)
    assert torch.equal(module.train_forward(inputs), module.net(inputs))
    assert module.train_forward.compiled is None  # nothing was compiled


def failing_backend(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> None:
    raise RuntimeError("no working C++ compiler (a stand-in for a broken toolchain)")


class AutoOnCpuWithFailingCompiler(TrainingForward):
    """``auto`` as it behaves on a GPU, here on a CPU, with a backend that fails as a broken toolchain does."""

    auto_devices = ("cpu",)
    backend = staticmethod(failing_backend)


def test_auto_falls_back_to_eager_with_a_warning_when_compiling_fails():
    torch.manual_seed(0)
    net = network(VOCAB, 5)
    inputs, _ = net.inputs_and_targets(ITEMS)
    forward = AutoOnCpuWithFailingCompiler(net, "auto")
    with pytest.warns(
        UserWarning, match=r"model.compile=auto: torch.compile failed on cpu .*training eagerly"
    ):
        logits = forward(inputs)
    assert torch.equal(logits, net(inputs)) and forward.gave_up and forward.compiled is None
    assert torch.equal(forward(inputs), net(inputs))  # later steps stay eager, without a second attempt


def test_an_explicit_compile_lets_the_failure_stop_the_run():
    net = network(VOCAB, 5)
    inputs, _ = net.inputs_and_targets(ITEMS)
    with pytest.raises(Exception, match="no working C\\+\\+ compiler"):
        AutoOnCpuWithFailingCompiler(net, True)(inputs)


def test_cuda_graphs_refuse_gradient_accumulation_before_the_first_step(tmp_path):
    """The CLI refuses the pair at parsing (tests/test_bad_input.py); a trainer set up in Python is refused by the
    module when the fit starts, before any step has trained."""
    cli = build_cli(tiny_args(tmp_path, "--model.compile=reduce-overhead")[1:], run=False, save_config=False)
    cli.trainer.accumulate_grad_batches = 2
    with pytest.raises(ConfigError, match="cannot accumulate gradients over 2 batches"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 0 and cli.model.train_forward.compiled is None
