"""Batch 512: attention kernels, dropout masks and the FLOP ceiling, round robin with the matmul measurement."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from common import Settings
from plain_loop import PlainLoop, matmul_step, timed_window, train_flops_per_step

from grokkit.models import Decoder
from grokkit.models.dropout import dropout
from grokkit.torch_private import bernoulli_draws_per_element

DROPOUT = 0.1  # Wang et al.'s
DROPOUT_WIDTH = 128


def measure_batch512(settings: Settings, grokkit: dict[str, Any], compile_too: bool) -> dict[str, Any]:
    table, vocab, item_len, hparams, activation = (
        grokkit["table"],
        grokkit["vocab_size"],
        grokkit["item_len"],
        grokkit["module_hparams"],
        grokkit["activation"],
    )
    shapes = {
        "4x128": dict(d_model=128, n_heads=4, n_layers=4),
        "8x256": dict(d_model=256, n_heads=8, n_layers=8),
    }
    arms: dict[str, Callable[[], None]] = {}
    flops: dict[str, float] = {}
    compile_s: dict[str, float] = {}
    mm, mm_flops = matmul_step(settings.matmul_n)
    arms["matmul"] = mm
    for shape, sizes in shapes.items():
        for attention in ("manual", "sdpa"):
            torch.manual_seed(0)
            model = Decoder(vocab, item_len, attention=attention, activation=activation, **sizes)
            loop = PlainLoop(model, table, 512, hparams)
            flops[shape] = train_flops_per_step(model, 512, item_len - 1, loop.unembedded())
            for _ in range(settings.warmup_512):
                loop.step()
            arms[f"{shape}/{attention}"] = loop.step
        if compile_too:
            torch.manual_seed(0)
            model = Decoder(vocab, item_len, attention="manual", activation=activation, **sizes)
            loop = PlainLoop(model, table, 512, hparams)
            loop.model = torch.compile(model)
            start = time.perf_counter()
            for _ in range(3):
                loop.step()
            compile_s[shape] = time.perf_counter() - start
            arms[f"{shape}/compiled"] = loop.step
    # One residual-stream activation of a 128-wide decoder at batch 512: grokkit's CPU dropout against PyTorch's.
    residual = torch.randn(512, item_len - 1, DROPOUT_WIDTH)
    arms["dropout/grokkit"] = lambda: dropout(residual, DROPOUT, training=True)
    arms["dropout/torch"] = lambda: F.dropout(residual, DROPOUT, training=True)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(settings.windows_512):
        for name, step in arms.items():  # a dropout call is ~1-3 ms: a fifth of the window is plenty
            seconds = settings.window_s / 5 if name.startswith("dropout/") else settings.window_s
            times[name].append(timed_window(step, seconds))
    return {
        "step_s": times,
        "flops_per_step": flops,
        "matmul_flops": mm_flops,
        "matmul_n": settings.matmul_n,
        "compile_s": compile_s,
        "dropout": {
            "p": DROPOUT,
            "shape": list(residual.shape),
            "bit_mask": bernoulli_draws_per_element(),  # else grokkit's dropout is PyTorch's
        },
    }
