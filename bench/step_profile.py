"""``make bench-profile``: where the batch-512 step of ``make bench``'s FLOP-fraction rows spends its time.

The FLOP fraction is the step's matmul FLOPs over its wall time, against this machine's square-matmul rate, so
it is the product of two things this splits apart: how fast the step's GEMMs run, and what share of the step
they take. The bench's plain loop (the Decoder, data, fused AdamW and loss of grokkit's step, nothing around
them) runs under PyTorch's profiler; each op's own time goes to a group (GEMMs; the bias copies, which are
``addmm``'s first write of its new output; attention ``bmm``; GELU; LayerNorm; ...), and the time no op
covers (Python) to a line of its own. The MLP's GELU is then timed alone on the step's shape, where its
buffers stay in cache. The matmul ceiling is timed before the profile, so the GEMMs' rate against it moves
with the machine's speed between the two (it can pass 1); the shares are the reading. `make bench`'s rows,
with their intervals, are the FLOP fractions. Prints the tables and writes ``bench/out/step_profile.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from common import DEFAULT_CONFIG, OUT, ROOT

sys.path.insert(0, str(ROOT))  # grokkit imports from the checkout, as `grokkit fit` does

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from grokkit_arm import build_grokkit, fit_overrides, load_config  # noqa: E402
from plain_loop import PlainLoop, matmul_step, timed_window, train_flops_per_step  # noqa: E402
from report import machine  # noqa: E402
from torch.autograd.profiler_util import FunctionEvent  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from grokkit.atomic import atomic_write  # noqa: E402
from grokkit.models import Decoder  # noqa: E402

# d_model, n_heads, n_layers of the bench's batch-512 rows
SHAPES = {"4x128": (128, 4, 4), "8x256": (256, 8, 8)}


@dataclass(frozen=True)
class Sizes:
    batch: int = 512
    steps: int = 30  # profiled steps
    windows: int = 5  # timed window pairs of the matmul and the unprofiled step (medians taken)
    window_s: float = 2.5  # seconds per window
    matmul_n: int = 2048  # the ceiling's square matmul, as `make bench` measures it


TINY_SHAPE, TINY = (16, 2, 2), Sizes(batch=32, windows=3, window_s=0.05, matmul_n=256)
TINY_DATA = ["--data.n_entities=200", "--data.n_relations=20", "--data.out_degree=10", "--data.eval_size=200"]

GEMMS, OUTSIDE = "GEMMs (mm, addmm)", "outside any op (Python, the profiler's bookkeeping)"
# Groups of the step's op time, by the profiler's op name; the first that matches takes the op.
GROUPS: list[tuple[str, Callable[[FunctionEvent], bool]]] = [
    (GEMMS, lambda e: e.name in ("aten::mm", "aten::addmm")),
    ("bias copies into addmm's output", lambda e: e.name == "aten::copy_" and parent_is(e, "aten::addmm")),
    ("attention bmm", lambda e: e.name == "aten::bmm"),
    ("GELU", lambda e: e.name.startswith("aten::gelu")),
    ("LayerNorm", lambda e: "layer_norm" in e.name),
    ("softmax, loss", lambda e: "softmax" in e.name or "nll_loss" in e.name),
    ("AdamW", lambda e: e.name.startswith(("aten::_fused_adam", "aten::_foreach"))),
    ("other copies, cat", lambda e: e.name in ("aten::copy_", "aten::cat")),
    ("other ops", lambda e: e.name.startswith("aten::")),
    ("autograd engine, optimizer wrappers", lambda e: True),
]


def parent_is(event: FunctionEvent, name: str) -> bool:
    """Whether ``event`` was called directly by the op ``name`` (addmm's bias copy, not another copy)."""
    return event.cpu_parent is not None and event.cpu_parent.name == name


def group_of(event: FunctionEvent) -> str:
    """The first group of :data:`GROUPS` whose rule takes ``event``."""
    return next(name for name, matches in GROUPS if matches(event))


def build_loop(
    shape: tuple[int, int, int], batch: int, data_args: list[str], tmp: Path
) -> tuple[PlainLoop, float]:
    """The bench's plain loop at ``shape`` on the default config's data (with ``data_args``), and its FLOPs."""
    cli = build_grokkit(
        DEFAULT_CONFIG, [*fit_overrides(torch.get_num_threads(), 1, tmp, "profile"), *data_args]
    )
    data, module = cli.datamodule, cli.model
    data.setup("fit")
    d_model, n_heads, n_layers = shape
    torch.manual_seed(0)
    activation = module.net.blocks[0].mlp.activation
    model = Decoder(
        data.vocab_size, data.item_len, d_model, n_heads, n_layers, attention="manual", activation=activation
    )
    loop = PlainLoop(model, data.split_items("train"), batch, dict(module.hparams))
    return loop, train_flops_per_step(model, batch, data.item_len - 1, loop.unembedded())


def profile_steps(loop: PlainLoop, steps: int) -> tuple[list[FunctionEvent], float]:
    """The profiler's events of ``steps`` steps and their wall time in seconds."""
    # Shapes are not recorded: profiles that recorded them slowed the step's memory-bound ops several times.
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        loop.run(steps)
        wall = time.perf_counter() - start
    return list(prof.events()), wall


def mean_self_time(events: list[FunctionEvent], name: str) -> float:
    """Mean self seconds of a call of the op ``name``."""
    matched = [e.self_cpu_time_total for e in events if e.name == name]
    return statistics.mean(matched) / 1e6 if matched else float("nan")


def gelu_alone(loop: PlainLoop, batch: int) -> tuple[list[int], Callable[[], torch.Tensor]]:
    """The shape of the MLP's GELU input in the step (every block's), and the same GELU alone on that shape,
    allocating its output as the step does."""
    mlp = loop.model.blocks[0].mlp
    shape = [batch, loop.table.size(1) - 1, mlp.fc.out_features]
    activations = torch.randn(shape)
    return shape, lambda: F.gelu(activations, approximate=mlp.approximate)


def saved_for_backward(loop: PlainLoop) -> int:
    """Bytes of the tensors one step keeps for its backward (each storage once, the weights excluded): what
    the step's elementwise ops stream through the caches."""
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loop.run(1)
    weights = {p.untyped_storage().data_ptr() for p in loop.model.parameters()}
    return sum(size for pointer, size in storages.items() if pointer not in weights)


def group_times(events: list[FunctionEvent], wall: float, steps: int) -> dict[str, float]:
    """Seconds per step by group: the ops' own times, and the rest of the wall time. Each op's self time
    excludes its children, so every profiled microsecond lands in one group; the rest is negative only if
    something is counted twice."""
    groups = {group: 0.0 for group, _ in GROUPS}
    for event in events:
        groups[group_of(event)] += event.self_cpu_time_total / 1e6 / steps
    groups[OUTSIDE] = wall / steps - sum(groups.values())
    return groups


def measure(name: str, shape: tuple[int, int, int], sizes: Sizes, data_args: list[str]) -> dict[str, Any]:
    """One shape: the unprofiled step and the matmul ceiling, the profiled step by group, the GELU alone."""
    with tempfile.TemporaryDirectory(prefix="grokkit-profile-") as tmp:
        loop, flops = build_loop(shape, sizes.batch, data_args, Path(tmp))
    loop.run(3)  # warm-up: the allocator's pools, the optimizer state
    mm, mm_flops = matmul_step(sizes.matmul_n)
    mm_s, step_s = [], []
    for _ in range(sizes.windows):  # interleaved, as `make bench` times them: both move with the machine
        mm_s.append(timed_window(mm, sizes.window_s))
        step_s.append(timed_window(loop.step, sizes.window_s))
    ceiling = mm_flops / statistics.median(mm_s)
    events, wall = profile_steps(loop, sizes.steps)
    gelu_shape, gelu = gelu_alone(loop, sizes.batch)
    gelu_timing = {
        "shape": gelu_shape,
        "in_step_s": mean_self_time(events, "aten::gelu"),
        "alone_s": timed_window(
            gelu, sizes.window_s / 5, 3
        ),  # a call is ~1 ms: a fifth of a window is plenty
    }
    return {
        "shape": name,
        "batch": sizes.batch,
        "steps_profiled": sizes.steps,
        "step_s": statistics.median(step_s),
        "profiled_step_s": wall / sizes.steps,
        "flops_per_step": flops,
        "matmul_flops_per_s": ceiling,
        "groups_s": group_times(events, wall, sizes.steps),
        "gelu": gelu_timing,
        "saved_for_backward_bytes": saved_for_backward(loop),
    }


def report(result: dict[str, Any]) -> str:
    """A Markdown table of one shape's profile, and the lines that read it."""
    per_step = result["profiled_step_s"]
    gemm = result["groups_s"][GEMMS]
    gemm_rate = result["flops_per_step"] / gemm if gemm else float("nan")
    ceiling = result["matmul_flops_per_s"]
    lines = [
        f"### {result['shape']}, batch {result['batch']}: {result['step_s'] * 1e3:.1f} ms a step "
        f"({per_step * 1e3:.1f} ms profiled, over {result['steps_profiled']} steps)",
        "",
        "| where | ms / step | share of the profiled step |",
        "|---|---|---|",
    ]
    for name, seconds in sorted(result["groups_s"].items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {seconds * 1e3:.1f} | {seconds / per_step:.3f} |")
    lines += [
        "",
        f"- FLOP fraction {result['flops_per_step'] / result['step_s'] / ceiling:.3f} unprofiled "
        f"({result['flops_per_step'] / 1e9:.2f} GFLOP a step, matmul ceiling {ceiling / 1e9:.0f} GFLOP/s, timed "
        f"before the profile) = the GEMMs' own rate in the profile, {gemm_rate / ceiling:.2f} of the ceiling "
        f"({gemm_rate / 1e9:.0f} GFLOP/s), x their share of the "
        f"profiled step, {gemm / per_step:.2f}, x the profiler's own cost (the profiled step is "
        f"{per_step / result['step_s']:.2f}x as long).",
    ]
    gelu = result["gelu"]
    lines.append(
        f"- The MLP's GELU forward on {' x '.join(map(str, gelu['shape']))}: {gelu['in_step_s'] * 1e6:.0f} us a "
        f"call inside the step, {gelu['alone_s'] * 1e6:.0f} us alone ({gelu['in_step_s'] / gelu['alone_s']:.1f}x)."
    )
    if "saved_for_backward_bytes" in result:  # profiles saved before it was measured lack it
        lines.append(
            f"- Kept for the backward: {result['saved_for_backward_bytes'] / 2**20:.0f} MiB a step (each storage "
            "once, the weights excluded)."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--steps", type=int, default=Sizes.steps, help="profiled steps per shape")
    parser.add_argument("--threads", type=int, help="torch threads (default: the config's, as `make bench`)")
    parser.add_argument("--tiny", action="store_true", help="a tiny network and graph: checks that it runs")
    parser.add_argument("--data-dir", type=Path, help="where the graph is built (default: the config's)")
    parser.add_argument("--out", type=Path, default=OUT / "step_profile.json")
    parser.add_argument("--show", type=Path, help="only print the tables of a saved step_profile.json")
    args = parser.parse_args()
    if args.show:
        results = json.loads(args.show.read_text())
    else:
        out, data_dir = args.out.resolve(), args.data_dir and args.data_dir.resolve()
        os.chdir(ROOT)  # data/ resolves as it does for `make fit`
        torch.set_num_threads(args.threads or load_config()[1].get("threads") or torch.get_num_threads())
        data_args = ([f"--data.data_dir={data_dir}"] if data_dir else []) + (TINY_DATA if args.tiny else [])
        shapes = {"tiny": TINY_SHAPE} if args.tiny else {name: SHAPES[name] for name in args.shapes}
        sizes = replace(TINY if args.tiny else Sizes(), steps=args.steps)
        results = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(),
            "shapes": [measure(name, shape, sizes, data_args) for name, shape in shapes.items()],
        }
        atomic_write(out, lambda f: f.write(json.dumps(results, indent=1).encode()))
    where = f"{results['machine']['cpu']}, {results['machine']['threads']} threads"
    print(f"Step profile of {results['date']} ({where})\n")
    print("\n\n".join(report(result) for result in results["shapes"]))


if __name__ == "__main__":
    main()
