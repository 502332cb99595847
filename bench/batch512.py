"""Batch 512: attention kernels and the FLOP ceiling, round robin with the matmul measurement."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from common import Settings
from plain_loop import PlainLoop, matmul_step, timed_window, train_flops_per_step

from grokkit.models import Decoder


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
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(settings.windows_512):
        for name, step in arms.items():
            times[name].append(timed_window(step, settings.window_s))
    return {
        "step_s": times,
        "flops_per_step": flops,
        "matmul_flops": mm_flops,
        "matmul_n": settings.matmul_n,
        "compile_s": compile_s,
    }
