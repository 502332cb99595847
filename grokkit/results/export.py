"""``grokkit export RUN_DIR``: a trained decoder as a TransformerLens ``HookedTransformer``.

grokkit's :class:`~grokkit.models.Decoder` is GPT-2 as TransformerLens builds it (pre-LayerNorm, learned
positions, GELU (tanh-approximated or exact), tied embeddings), so its weights map one to one; a decoder with shared
layers is written unrolled (application ``i`` gets the weights of block ``i % n_unique_layers``). Exporting
needs only torch; loading the file (:func:`load_hooked_transformer`) needs the ``export`` extra
(``pip install -e '.[export]'``). The file also holds the vocabulary, so queries can be written by name.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from grokkit.cli.configfiles import class_name
from grokkit.cli.finished_run import data_module, run_config, run_dir_parser
from grokkit.data import TwoHopDataModule
from grokkit.errors import ConfigError
from grokkit.models import Decoder
from grokkit.outputs import check_file
from grokkit.probes.causal_tracing import TRACEABLE_SPLITS
from grokkit.train.checkpoint_file import read_checkpoint
from grokkit.train.checkpointing import atomic_torch_save
from grokkit.train.warm_start import load_network_weights


def hooked_transformer_config(decoder: Decoder, vocab_size: int) -> dict[str, Any]:
    """Init arguments of ``HookedTransformerConfig`` describing ``decoder`` (all its block applications)."""
    block = decoder.blocks[0]
    n_heads = block.attn.n_heads
    return {
        "n_layers": decoder.n_layers,
        "d_model": decoder.d_model,
        "n_ctx": decoder.wpe.num_embeddings,
        "d_head": decoder.d_model // n_heads,
        "n_heads": n_heads,
        "d_mlp": block.mlp.fc.out_features,
        "d_vocab": vocab_size,
        "act_fn": {"gelu_tanh": "gelu_new", "gelu": "gelu"}[block.mlp.activation],  # TransformerLens's names
        "normalization_type": "LN",
        "eps": block.ln_1.eps,
        "positional_embedding_type": "standard",
        "default_prepend_bos": False,  # grokkit's queries have no BOS token
    }


def hooked_transformer_weights(decoder: Decoder) -> dict[str, torch.Tensor]:
    """``decoder``'s weights under TransformerLens's names and shapes, one block per application."""
    d_model, n_heads = decoder.d_model, decoder.blocks[0].attn.n_heads
    d_head = d_model // n_heads
    weights = {
        "embed.W_E": decoder.wte.weight,
        "pos_embed.W_pos": decoder.wpe.weight,
        "ln_final.w": decoder.ln_f.weight,
        "ln_final.b": decoder.ln_f.bias,
        "unembed.W_U": decoder.wte.weight.T,  # tied
        "unembed.b_U": torch.zeros(decoder.wte.num_embeddings),
    }
    for layer in range(decoder.n_layers):
        block, name = decoder.blocks[layer % len(decoder.blocks)], f"blocks.{layer}"
        q, k, v = block.attn.qkv.weight.split(d_model)  # each (d_model out, d_model in), heads along "out"
        bq, bk, bv = block.attn.qkv.bias.split(d_model)
        for key, w, b in (("Q", q, bq), ("K", k, bk), ("V", v, bv)):
            weights[f"{name}.attn.W_{key}"] = w.T.reshape(d_model, n_heads, d_head).permute(1, 0, 2)
            weights[f"{name}.attn.b_{key}"] = b.reshape(n_heads, d_head)
        weights[f"{name}.attn.W_O"] = block.attn.proj.weight.T.reshape(n_heads, d_head, d_model)
        weights[f"{name}.attn.b_O"] = block.attn.proj.bias
        for norm, ln in (("ln1", block.ln_1), ("ln2", block.ln_2)):
            weights[f"{name}.{norm}.w"], weights[f"{name}.{norm}.b"] = ln.weight, ln.bias
        weights[f"{name}.mlp.W_in"] = block.mlp.fc.weight.T
        weights[f"{name}.mlp.b_in"] = block.mlp.fc.bias
        weights[f"{name}.mlp.W_out"] = block.mlp.proj.weight.T
        weights[f"{name}.mlp.b_out"] = block.mlp.proj.bias
    return {key: value.detach().clone().contiguous() for key, value in weights.items()}


def run_decoder(run_dir: Path, checkpoint: Path) -> tuple[Decoder, TwoHopDataModule]:
    """The decoder a run trained (its EMA weights when it kept an EMA), and the run's data."""
    config = run_config(run_dir)
    if not checkpoint.is_file():
        raise ConfigError(
            f"checkpoint {checkpoint} not found; give one with --ckpt (default: checkpoints/last.ckpt)"
        )
    network = config["model"].get("network") or {}
    if not isinstance(network, dict):  # a class path alone
        network = {"class_path": str(network)}
    if class_name(network) != "Decoder":
        raise ConfigError(
            f"{run_dir / 'config.yaml'}: model.network is {network.get('class_path') or 'not set'}; "
            "TransformerLens has no counterpart of it, only grokkit.models.Decoder runs are exported"
        )
    saved = read_checkpoint(checkpoint, f"--ckpt {checkpoint}")
    data = data_module(config["data"])
    data.setup("validate")  # the vocabulary comes from the dataset directory (rebuilt if it was deleted)
    decoder = Decoder(data.vocab_size, data.item_len, **network.get("init_args", {}))
    load_network_weights(decoder, saved, f"--ckpt {checkpoint}", f"give a checkpoint of {run_dir}")
    return decoder.eval(), data


def two_hop_items(data: TwoHopDataModule) -> dict[str, torch.Tensor]:
    """The run's two-hop evaluation items (h r1 r2 t </a>) per split, a transfer run's new-fact categories
    included."""
    return {split: data.split_items(split) for split in TRACEABLE_SPLITS if split in data.eval_splits}


def export(run_dir: Path, checkpoint: Path | None = None, out: Path | None = None) -> Path:
    """Write the run's decoder as a TransformerLens file (config, weights, vocabulary); returns its path."""
    checkpoint = checkpoint or run_dir / "checkpoints" / "last.ckpt"
    out = check_file(out or run_dir / "hooked_transformer.pt", "--out")
    decoder, data = run_decoder(run_dir, checkpoint)
    vocab = data.manifest["vocab"]
    atomic_torch_save(
        {
            "config": hooked_transformer_config(decoder, data.vocab_size),
            "state_dict": hooked_transformer_weights(decoder),
            "vocab": ["<pad>", "</a>", *vocab["entities"], *vocab["relations"]],  # token id = list index
            "items": two_hop_items(data),
            "checkpoint": str(checkpoint),
        },
        out,
    )
    return out


def load_hooked_transformer(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The exported ``HookedTransformer`` (in eval mode) and the file's other contents (vocab, items)."""
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as error:
        raise ConfigError(
            f"loading {path} needs TransformerLens: pip install -e '.[export]' ({error})"
        ) from None
    exported = torch.load(path, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():  # TransformerLens 3 announces its own 4.0, which drops this class
        warnings.filterwarnings(
            "ignore", message="HookedTransformer is deprecated", category=DeprecationWarning
        )
        model = HookedTransformer(HookedTransformerConfig(**exported.pop("config")))
    missing, unexpected = model.load_state_dict(exported.pop("state_dict"), strict=False)
    buffers = dict(model.named_buffers())  # attention masks: TransformerLens builds its own
    if unexpected or any(key not in buffers for key in missing):
        raise ConfigError(
            f"{path} does not fit this TransformerLens version (missing {missing}, unexpected {unexpected})"
        )
    return model.eval(), exported


def export_command(argv: list[str]) -> None:
    parser = run_dir_parser(
        "export", "Write a run's trained decoder as a TransformerLens HookedTransformer file."
    )
    parser.add_argument(
        "--ckpt", type=Path, help="the checkpoint to export (default: RUN_DIR/checkpoints/last.ckpt)"
    )
    parser.add_argument("--out", type=Path, help="the file to write (default: RUN_DIR/hooked_transformer.pt)")
    args = parser.parse_args(argv)
    out = export(args.run_dir, args.ckpt, args.out)
    print(f"grokkit export: {out} (load it with grokkit.results.export.load_hooked_transformer)")
