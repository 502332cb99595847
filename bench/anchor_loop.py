"""The original studies' way of training, rebuilt for timing: what grokkit's speed is measured against.

Wang et al.'s trainer (simpletransformers around Hugging Face's ``GPT2LMHeadModel``), as it trains a fact:
the 50,257-token GPT-2 vocabulary plus one added token per entity, relation and special, padded to a
multiple of 8 (52,464 at paper scale); every item padded to 10 tokens; a ``DataLoader`` whose Python collate
pads each batch; the language-model loss on the answer tokens through the full vocabulary; AdamW with decay
groups, a warm-up schedule, gradient clipping at 1.0, and ``loss.item()`` every step. Only the BPE itself
is left out: the task tokens are single tokens, so it never runs on them. Needs the ``bench`` extra
(``pip install -e '.[bench]'``: transformers).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, Settings
from grokkit_arm import ON_CPU, attach, build_grokkit, hide_progress_bar
from plain_loop import unembedded_positions
from step_clock import StepClock

GPT2_VOCAB = 50_257
PADDED_LENGTH = 10
WANG_CONFIG = ROOT / "configs" / "wang2024" / "composition.yaml"  # the paper-scale graph, dropout 0.1
ANCHOR_SIZES = {"d_model": 128, "n_layers": 4, "n_heads": 4}


def transformers_version() -> str | None:
    try:
        import transformers
    except ImportError:
        return None
    return transformers.__version__


class AnchorLoop:
    """One optimizer step of the original trainer on ``items`` (grokkit's token table, rows ``h r1 r2 t </a>``)."""

    def __init__(self, items: torch.Tensor, vocab_size: int, d_model: int, n_layers: int, n_heads: int,
                 batch_size: int) -> None:  # fmt: skip
        from transformers import GPT2Config, GPT2LMHeadModel, get_constant_schedule_with_warmup

        vocab = GPT2_VOCAB + vocab_size
        vocab += -vocab % 8
        self.pad = GPT2_VOCAB  # the first added token stands in for the pad token
        config = GPT2Config(
            vocab_size=vocab, n_positions=1024, n_embd=d_model, n_layer=n_layers, n_head=n_heads
        )
        self.model = GPT2LMHeadModel(config).train()
        no_decay = ("bias", "ln_", "LayerNorm")
        groups = [
            {"params": [p for n, p in self.model.named_parameters() if not any(k in n for k in no_decay)],
             "weight_decay": 0.1},
            {"params": [p for n, p in self.model.named_parameters() if any(k in n for k in no_decay)],
             "weight_decay": 0.0},
        ]  # fmt: skip
        self.optimizer = torch.optim.AdamW(groups, lr=1e-4, eps=1e-8)
        self.schedule = get_constant_schedule_with_warmup(self.optimizer, num_warmup_steps=2000)
        # The trainer's examples: Python lists of token ids (prompt, then the answer and </a>).
        self.examples = [[GPT2_VOCAB + t for t in row if t != 0] for row in items.tolist()]
        self.batch_size, self.random = batch_size, random.Random(0)

    def collate(self, batch: list[list[int]]) -> dict[str, torch.Tensor]:
        """The Python collate: pad each example to 10 tokens, labels only on the answer tokens."""
        input_ids, attention, labels = [], [], []
        for tokens in batch:
            prompt = len(tokens) - 2  # h r (t </a>) or h r1 r2 (t </a>)
            padded = tokens + [self.pad] * (PADDED_LENGTH - len(tokens))
            input_ids.append(padded)
            attention.append([1] * len(tokens) + [0] * (PADDED_LENGTH - len(tokens)))
            labels.append([-100] * prompt + tokens[prompt:] + [-100] * (PADDED_LENGTH - len(tokens)))
        return {key: torch.tensor(value) for key, value in
                (("input_ids", input_ids), ("attention_mask", attention), ("labels", labels))}  # fmt: skip

    def step(self) -> float:
        batch = self.collate(self.random.sample(self.examples, self.batch_size))
        loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad()
        return loss.item()


def measure_anchor(settings: Settings, tmp: Path, threads: int) -> dict[str, Any]:
    """grokkit's real Trainer on the paper-scale graph (Wang et al.'s config at 4 x 128, batch 512) against
    the anchor loop on the same items, interleaved window by window (grokkit, anchor, grokkit, ...)."""
    if transformers_version() is None:
        return {"skipped": "transformers is not installed (pip install -e '.[bench]')"}
    window = settings.anchor_window
    total = settings.warmup_512 + settings.windows_anchor * window
    cli = build_grokkit(WANG_CONFIG, [
        f"--threads={threads}", ON_CPU,
        *(f"--model.network.init_args.{key}={value}" for key, value in ANCHOR_SIZES.items()),
        f"--model.network.init_args.d_mlp={4 * ANCHOR_SIZES['d_model']}", "--trainer.precision=32-true",
        f"--trainer.max_steps={total}", f"--trainer.val_check_interval={10 * total}", "--trainer.max_time=null",
        "--trainer.num_sanity_val_steps=0", f"--trainer.logger.init_args.save_dir={tmp}",
        "--trainer.logger.init_args.name=anchor", "--trajectory.min_step=1000000000000",
        f"--checkpoint.every_n_train_steps={10 * total}",
    ])  # fmt: skip
    module, data, trainer = cli.model, cli.datamodule, cli.trainer
    hide_progress_bar(trainer)  # as `grokkit fit` runs: its cost stays in the step time
    data.setup("fit")
    loop = AnchorLoop(data.split_items("train"), data.vocab_size, **ANCHOR_SIZES, batch_size=data.batch_size)
    for _ in range(settings.warmup_512):
        loop.step()

    def between() -> float:
        start = time.perf_counter()
        for _ in range(window):
            loop.step()
        return time.perf_counter() - start

    clock = StepClock(settings.warmup_512, window, settings.windows_anchor, between)
    attach(trainer, clock)
    trainer.fit(module, datamodule=data)
    return {
        "grokkit_s": clock.grokkit, "anchor_s": clock.plain, "batch_size": data.batch_size, "window": window,
        "grokkit_vocab": data.vocab_size, "anchor_vocab": loop.model.config.vocab_size,
        "sizes": ANCHOR_SIZES, "dropout": module.net.drop.p, "transformers": transformers_version(),
        "unembedded": unembedded_positions(module.net, data.split_items("train"),
                                           module.hparams.train_logits == "all"),
        "items": len(loop.examples),
    }  # fmt: skip
