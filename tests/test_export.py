"""`grokkit export`: a trained decoder, shared layers unrolled, gives TransformerLens the same logits."""

import ast
import re
from pathlib import Path

import pytest
import torch

from grokkit.cli import main
from grokkit.models import Decoder
from grokkit.results.export import (
    hooked_transformer_config,
    hooked_transformer_weights,
    load_hooked_transformer,
    run_decoder,
)
from grokkit.train.checkpointing import atomic_torch_save

ROOT = Path(__file__).resolve().parents[1]


def readme_python_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return next(block for block in blocks if containing in block)


@pytest.mark.slow
def test_exported_decoder_gives_grokkit_logits_in_transformer_lens(tmp_path, capsys):
    pytest.importorskip("transformer_lens")  # the `export` extra; `make test` installs it
    main(
        [
            "fit",
            "--config", str(ROOT / "configs/tiny.yaml"),
            f"--data.data_dir={tmp_path / 'data'}",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
            "--trainer.max_steps=20",
            "--model.network.init_args.n_layers=4",
            "--model.network.init_args.n_unique_layers=2",  # 2 weight sets applied twice: exported unrolled
        ]
    )  # fmt: skip
    run = tmp_path / "runs" / "tiny" / "version_0"
    main(["export", str(run)])
    assert f"grokkit export: {run / 'hooked_transformer.pt'}" in capsys.readouterr().out

    model, extra = load_hooked_transformer(run / "hooked_transformer.pt")
    decoder, _ = run_decoder(run, run / "checkpoints" / "last.ckpt")
    assert model.cfg.n_layers == 4 and len(decoder.blocks) == 2
    items = torch.cat([extra["items"][split] for split in ("train_inferred", "test_inferred_iid")])
    inputs, _ = decoder.inputs_and_targets(items)  # h r1 r2 t: real queries with their answers
    with torch.no_grad():
        expected, states = decoder(inputs, return_states=True)
        logits, cache = model.run_with_cache(inputs)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    for layer in range(4):  # the residual stream too, stage by stage
        torch.testing.assert_close(
            cache[f"blocks.{layer}.hook_resid_post"], states[layer + 1], rtol=1e-4, atol=1e-4
        )
    answers = logits[:, 2].argmax(-1)  # the output at r2 predicts t
    assert (answers == items[:, 3]).float().mean() == (
        expected[:, 2].argmax(-1) == items[:, 3]
    ).float().mean()
    assert extra["vocab"][int(items[0, 0])].startswith("<e_")

    example = readme_python_block("run_with_cache").replace("runs/default/version_0", str(run))
    exec(compile(example, "README.md", "exec"), {})  # the README's example, as written
    answers, truths = map(ast.literal_eval, capsys.readouterr().out.splitlines())  # two lists of token names
    assert len(answers) == len(truths) > 0 and set(answers + truths) <= set(extra["vocab"])


@pytest.mark.parametrize("activation", ["gelu_tanh", "gelu"])
def test_each_gelu_maps_to_its_transformer_lens_counterpart(tmp_path, activation):
    pytest.importorskip("transformer_lens")
    torch.manual_seed(0)
    decoder = Decoder(30, 5, d_model=32, n_heads=4, n_layers=2, activation=activation).eval()
    with torch.no_grad():  # pre-activations of order 1, where the two GELUs differ most, and a loud MLP
        decoder.blocks[0].mlp.fc.weight.mul_(20)
        decoder.blocks[0].mlp.proj.weight.mul_(100)
    other = Decoder(
        30, 5, d_model=32, n_heads=4, n_layers=2, activation=({"gelu", "gelu_tanh"} - {activation}).pop()
    )
    other.load_state_dict(decoder.state_dict())
    path = tmp_path / "model.pt"
    atomic_torch_save(
        {"config": hooked_transformer_config(decoder, 30), "state_dict": hooked_transformer_weights(decoder)},
        path,
    )
    model, _ = load_hooked_transformer(path)
    inputs = torch.randint(0, 30, (16, 4))
    with torch.no_grad():
        logits, expected = model(inputs), decoder(inputs)
        assert (other.eval()(inputs) - expected).abs().max() > 2e-5  # the test can tell the two apart
    torch.testing.assert_close(logits, expected, rtol=0, atol=5e-6)


def test_export_refuses_a_recursive_run(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "config.yaml").write_text(
        "model:\n  network:\n    class_path: grokkit.models.Recursive\ndata: {}\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run)])
    assert exit_info.value.code == 2
    assert "only grokkit.models.Decoder runs are exported" in capsys.readouterr().err
