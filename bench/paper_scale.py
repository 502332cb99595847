"""``make bench-paper``: what the studies' paper-scale runs cost with grokkit on this machine.

He et al.'s recursive model (``configs/he2026/natural.yaml``) and Wang et al.'s 8 x 768 decoder
(``configs/wang2024/composition.yaml``), each built by grokkit's own CLI from its shipped config and trained
by the real ``Trainer`` (callbacks, logger, progress bar), eager and ``torch.compile``'d (the decoder also in
compile's ``reduce-overhead`` mode: CUDA graphs on a GPU), in the config's precision (bf16-mixed, autocast on
a CPU too). Per arm: steps/s; for eager arms, the step against a plain PyTorch loop making the same update on
the same device; achieved TFLOP/s and MFU against the device's peak; host syncs per step; one validation with
the config's probes; peak memory; and the projected wall time of the paper run (its ``max_steps`` x the step
time + its validations and probe runs). The recursive model is also timed without its 16 prefix slots. Prints
one table and writes ``bench/out/paper_scale.json``.

On a machine without a GPU it runs the same arms at tiny sizes (``--tiny``, automatic there), so CI
exercises it; those numbers say nothing about the paper runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import OUT, ROOT, one_line

sys.path.insert(0, str(ROOT))  # grokkit and plugins/ import from the checkout, as `grokkit fit` does

import torch  # noqa: E402
import yaml  # noqa: E402
from grokkit_arm import attach, build_grokkit, hide_progress_bar, runs_in  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from plain_loop import PlainLoop, train_flops_per_step, unembedded_positions  # noqa: E402
from report import machine  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from step_clock import HostReadWindow  # noqa: E402

from grokkit.atomic import atomic_write  # noqa: E402
from grokkit.cli import TRAINER_DEFAULTS  # noqa: E402
from grokkit.models import Decoder, Recursive, TwoHopModel  # noqa: E402
from grokkit.probes import Probe  # noqa: E402

CONFIGS = {
    "recursive (He et al.)": ROOT / "configs" / "he2026" / "natural.yaml",
    "decoder 8 x 768 (Wang et al.)": ROOT / "configs" / "wang2024" / "composition.yaml",
}
# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, no sparsity), matched by device name in
# this order (the NVL parts before the names they contain). Cards without bf16 tensor cores (V100, T4) are left
# out: their MFU shows "-".
BF16_PEAK_TFLOPS = {
    "H200 NVL": 835.5, "H100 NVL": 835.5, "H200": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100": 989.4,
    "B200": 2250.0, "A100": 312.0, "L40S": 362.1, "L40": 181.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0,
    "RTX 4090": 165.2, "RTX 3090": 71.0,
}  # fmt: skip
TINY_DATA = [
    "--data.n_entities=200", "--data.n_relations=20", "--data.out_degree=10", "--data.phi=5.0",
    "--data.batch_size=16", "--data.eval_size=100", "--data.eval_batch_size=512",
]  # fmt: skip
TINY_NETWORK = {
    "recursive (He et al.)": ["--model.network.init_args.d_model=64", "--model.network.init_args.L_cycles=2"],
    "decoder 8 x 768 (Wang et al.)": [
        "--model.network.init_args.d_model=64", "--model.network.init_args.n_heads=4",
        "--model.network.init_args.n_layers=2", "--model.network.init_args.d_mlp=256",
    ],
}  # fmt: skip


# Each mode's model.compile, in the order the arms run (a compile is the slowest, least predictable part).
MODES = {"eager": False, "compile": True, "reduce-overhead": "reduce-overhead"}
# CUDA graphs (reduce-overhead) pay where launching a step's kernels costs as much as running them: the
# decoder's 4 tokens. The recursive model's 21 x 1536 tokens make large matmuls, and its compile is the run's
# longest.
MODE_MODELS = {"reduce-overhead": ("decoder 8 x 768 (Wang et al.)",)}  # the models a mode runs (default: all)


@dataclass(frozen=True)
class Arm:
    model: str
    mode: str  # a key of MODES
    overrides: tuple[str, ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        return f"{self.model}, {self.label or self.mode}"


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Stopwatch(Callback):
    """Times steps ``warmup`` -> ``warmup + steps`` of a fit (device synced at both ends only), and each
    validation hook to hook with its probes' share."""

    def __init__(self, warmup: int, steps: int, probes: list[Probe]) -> None:
        self.warmup, self.steps = warmup, steps
        self.started = self.step_s = None
        self.validations: list[dict[str, float]] = []
        for probe in probes:
            self.time_probe(probe)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            synchronize()
            self.started = time.perf_counter()
        elif trainer.global_step == self.warmup + self.steps and self.started is not None:
            synchronize()
            self.step_s = (time.perf_counter() - self.started) / self.steps

    def on_validation_start(self, trainer, pl_module) -> None:
        synchronize()
        self.validations.append({"start": time.perf_counter()})

    def on_validation_end(self, trainer, pl_module) -> None:  # registered last: after every probe
        synchronize()
        record = self.validations[-1]
        record["total"] = time.perf_counter() - record.pop("start")

    def time_probe(self, probe: Probe) -> None:
        run = probe.run

        def timed(*args: Any, **kwargs: Any) -> Any:
            synchronize()
            start = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                synchronize()
                self.validations[-1][probe.name] = time.perf_counter() - start

        probe.run = timed  # type: ignore[method-assign]


def train_flops(net: TwoHopModel, batch: int, item_len: int, unembedded: int) -> float:
    """Training FLOPs of one step: 2 per weight and token forward, 4 backward, counting every matrix
    application (biases, norms, attention scores and the sequence MLP's own width left out); the
    decoder unembeds ``unembedded`` positions per item."""
    if isinstance(net, Decoder):
        return train_flops_per_step(net, batch, item_len - 1, unembedded)
    if isinstance(net, Recursive):
        level = sum(
            m.weight.numel()
            for block in net.level
            for m in block.channel_mlp.modules()
            if hasattr(m, "weight")
        )
        tokens = batch * (net.n_prefix + item_len)
        applications = net.H_cycles * (net.L_cycles + 1)
        with_grad = net.L_cycles + 1  # only the last H cycle carries gradients
        head = 6.0 * net.lm_head.weight.numel() * batch * item_len
        return 2.0 * level * tokens * applications + 4.0 * level * tokens * with_grad + head
    raise TypeError(f"no FLOP count for {type(net).__name__}")


def device_peak() -> tuple[str, float | None]:
    """The device's name and its dense bf16 peak in FLOP/s, if the data sheet table knows it."""
    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name()
    return name, bf16_peak(name)


def bf16_peak(device_name: str) -> float | None:
    """The first :data:`BF16_PEAK_TFLOPS` entry that ``device_name`` contains, in FLOP/s."""
    match = next((key for key in BF16_PEAK_TFLOPS if key in device_name), None)
    return BF16_PEAK_TFLOPS[match] * 1e12 if match else None


def matmul_ceiling(seconds: float) -> float:
    """Measured FLOP/s of a large square matmul: bf16 on a GPU, fp32 on the CPU."""
    cuda = torch.cuda.is_available()
    n, dtype = (8192, torch.bfloat16) if cuda else (1024, torch.float32)
    device = "cuda" if cuda else "cpu"
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    synchronize()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        calls += 1
        if calls % 10 == 0:
            synchronize()
    synchronize()
    return 2.0 * n**3 * calls / (time.perf_counter() - start)


def measure(
    arm: Arm, config: Path, tiny: bool, warmup: int, steps: int, tmp: Path, data_dir: Path
) -> dict[str, Any]:
    """One arm: a fit of ``warmup`` steps, ``steps`` timed ones and one logging interval in which host reads are
    counted (counting costs time), then one validation running every configured probe."""
    raw = yaml.safe_load(config.read_text())["trainer"]
    log_every = 2 if tiny else int(raw.get("log_every_n_steps", TRAINER_DEFAULTS["log_every_n_steps"]))
    total = warmup + steps + log_every + 1
    overrides = [
        f"--trainer.max_steps={total}", "--trainer.max_time=null", f"--trainer.log_every_n_steps={log_every}",
        f"--trainer.val_check_interval={10 * total}", "--trainer.num_sanity_val_steps=0",
        f"--trainer.logger.init_args.save_dir={tmp}", f"--trainer.logger.init_args.name={arm.mode}",
        "--trajectory.min_step=1000000000000", f"--checkpoint.every_n_train_steps={10 * (warmup + steps)}",
        f"--model.compile={MODES[arm.mode]}", f"--data.data_dir={data_dir}",
    ]  # fmt: skip
    if tiny:  # the config's precision stays: bf16-mixed autocasts on a CPU too, so CI runs the GPU's code
        overrides += [*TINY_DATA, *TINY_NETWORK[arm.model]]
    cli = build_grokkit(config, [*overrides, *arm.overrides])
    module, data, trainer = cli.model, cli.datamodule, cli.trainer
    hide_progress_bar(trainer)  # its cost stays in the step time
    probes = [c for c in trainer.callbacks if isinstance(c, Probe)]
    clock = Stopwatch(warmup, steps, probes)
    host = HostReadWindow(start=warmup + steps, steps=log_every)  # one logging step in it
    attach(trainer, host, clock)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    fit_s = time.perf_counter() - started
    if clock.step_s is None:
        raise RuntimeError(f"the fit stopped at step {trainer.global_step}, before its timed window closed")
    train_memory = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()  # the validation's own peak next
    trainer.validate(module, datamodule=data, verbose=False)
    validation = clock.validations[-1]
    validation_memory = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    plain = plain_or_error(module, data, trainer, warmup, steps) if arm.mode == "eager" else {}
    names = [probe.name for probe in probes]
    every_position = module.hparams.train_logits == "all"
    unembedded = unembedded_positions(module.net, data.split_items("train"), every_position)
    paper_steps = int(raw["max_steps"])
    interval = int(raw.get("val_check_interval", TRAINER_DEFAULTS["val_check_interval"]))
    probe_runs = {probe.name: runs_in(probe, paper_steps, interval) for probe in probes}
    return {
        "arm": arm.name,
        "model": arm.model,
        "mode": arm.mode,
        "step_s": clock.step_s,
        **plain,
        "flops_per_step": train_flops(module.net, data.batch_size, data.item_len, unembedded),
        "parameters": sum(p.numel() for p in module.net.parameters()),
        "batch_size": data.batch_size,
        "precision": str(trainer.precision),
        "host_reads_per_step": sum(host.counter.values()) / max(1, host.stop - host.start),
        "host_read_sites": dict(host.counter),
        "validation_s": validation["total"] - sum(validation.get(name, 0.0) for name in names),
        "probe_s": {name: validation.get(name) for name in names},
        "probe_runs": probe_runs,
        "train_memory_bytes": train_memory,
        "memory_bytes": validation_memory,
        # the data build, compile and warm-up, the host-read steps, the final checkpoint and teardown
        "outside_window_s": fit_s - clock.step_s * steps,
        "paper_steps": paper_steps,
        "paper_validations": paper_steps // interval,
    }


def plain_or_error(module: Any, data: Any, trainer: Any, warmup: int, steps: int) -> dict[str, Any]:
    """Seconds per step of a plain loop making the arm's update (:meth:`PlainLoop.like`) on the fitted network,
    on the trainer's device (the fit's teardown moved the module back to the CPU), synced at both ends as
    :class:`Stopwatch` times grokkit's steps; or the loop's error, which leaves the arm's own numbers."""
    device = trainer.strategy.root_device
    try:
        table = data.split_items("train").to(device)
        loop = PlainLoop.like(trainer, dict(module.hparams), module.net.to(device), table, data.batch_size)
        loop.run(warmup)
        synchronize()
        start = time.perf_counter()
        loop.run(steps)
        synchronize()
        return {"plain_step_s": (time.perf_counter() - start) / steps, "plain_device": str(device)}
    except Exception as error:  # recorded beside the arm's numbers, its traceback printed
        traceback.print_exc()
        return {"plain_error": one_line(error)}


def projected_s(result: dict[str, Any]) -> float:
    """Steps x step time + validations + probe runs at their schedules: the paper run's wall time."""
    probes = sum((result["probe_s"][name] or 0.0) * runs for name, runs in result["probe_runs"].items())
    return (
        result["paper_steps"] * result["step_s"]
        + result["paper_validations"] * result["validation_s"]
        + probes
    )


def rows(results: dict[str, Any]) -> list[list[str]]:
    peak, ceiling = results["peak_flops"], results["matmul_flops"]
    table = []
    for r in results["arms"]:
        if "error" in r:  # an arm that failed: the others' numbers stand
            table.append([r["arm"], f"failed: {r['error']}", *["-"] * (len(COLUMNS) - 2)])
            continue
        achieved = r["flops_per_step"] / r["step_s"]
        mfu = f"{achieved / peak:.3f}" if peak else "-"
        memory = (
            "-"
            if not r["memory_bytes"]
            else f"{r['train_memory_bytes'] / 2**30:.1f} / {r['memory_bytes'] / 2**30:.1f}"
        )
        probes = sum(v or 0.0 for v in r["probe_s"].values())
        plain = f"{r['step_s'] / r['plain_step_s']:.3f}" if "plain_step_s" in r else "-"
        plain = f"failed: {r['plain_error']}" if "plain_error" in r else plain
        table.append([
            r["arm"], f"{1 / r['step_s']:.2f}", f"{r['step_s'] * 1e3:.1f}", plain, f"{achieved / 1e12:.3f}",
            mfu, f"{achieved / ceiling:.3f}", f"{r['host_reads_per_step']:.2f}",
            f"{r['validation_s']:.2f} + {probes:.2f}", memory, f"{r['outside_window_s']:.0f}",
            f"{projected_s(r) / 3600:.1f} h ({r['paper_steps']:,} steps)",
        ])  # fmt: skip
    return table


COLUMNS = (
    "arm", "steps/s", "ms/step", "step / plain loop", "TFLOP/s", "MFU", "of matmul", "host syncs/step",
    "validation + probes (s)", "peak memory, training / validation (GiB)", "fit outside the timed steps (s)",
    "projected paper run",
)  # fmt: skip


def header(results: dict[str, Any]) -> str:
    peak = (
        f"{results['peak_flops'] / 1e12:.0f} TFLOP/s bf16 peak" if results["peak_flops"] else "no peak known"
    )
    scale = "TINY sizes (not the paper's)" if results["tiny"] else "paper sizes"
    return (
        f"grokkit paper-scale bench {results['date'][:16].replace('T', ' ')} - {results['device']} ({peak}; "
        f"measured matmul {results['matmul_flops'] / 1e12:.3f} TFLOP/s); {scale}; {results['elapsed_s']:.0f} s"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [header(results), "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows(results)]
    return "\n".join(lines)


def show(results: dict[str, Any], console: Console) -> None:
    table = Table(title=header(results))
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows(results):
        table.add_row(*row)
    console.print(table)


def arms(modes: list[str]) -> list[Arm]:
    """The models in each mode, in :data:`MODES`' order: a compile is the slowest and least predictable part,
    so a run cut short keeps the eager rows. The recursive model without its prefix slots follows the first
    mode that runs that model."""
    modes = sorted(modes, key=list(MODES).index)
    chosen = [
        Arm(model, mode) for mode in modes for model in CONFIGS if model in MODE_MODELS.get(mode, CONFIGS)
    ]
    recursive = "recursive (He et al.)"
    first = next((arm.mode for arm in chosen if arm.model == recursive), None)
    if first is None:
        return chosen
    after = max(index for index, arm in enumerate(chosen) if arm.mode == first) + 1
    prefix = Arm(recursive, first, ("--model.network.init_args.n_prefix=0",), f"{first}, no prefix slots")
    return [*chosen[:after], prefix, *chosen[after:]]


def measure_or_record(
    arm: Arm, tiny: bool, warmup: int, steps: int, tmp: Path, data_dir: Path
) -> dict[str, Any]:
    """:func:`measure`, or the arm's error: one failing arm (a compile, the memory) leaves the others' rows."""
    try:
        return measure(arm, CONFIGS[arm.model], tiny, warmup, steps, tmp, data_dir)
    except Exception as error:  # recorded in the table and the JSON, its traceback printed
        traceback.print_exc()
        return {
            "arm": arm.name,
            "model": arm.model,
            "mode": arm.mode,
            "error": one_line(error),
        }
    finally:
        gc.collect()
        if torch.cuda.is_available():
            with contextlib.suppress(Exception):  # after a sticky CUDA error; the arm's own error is recorded
                torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (automatic without a GPU)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per arm (default 10; tiny 3)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per arm (default 100: two logging intervals; tiny 10)",
    )
    parser.add_argument("--out", type=Path, default=OUT / "paper_scale.json")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="where datasets are built")
    parser.add_argument("--show", type=Path, help="only print the table of a saved paper_scale.json")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 200)
    if args.show:
        results = json.loads(args.show.read_text())
        print(markdown(results)) if args.markdown else show(results, console)
        return
    tiny = args.tiny or not torch.cuda.is_available()
    warmup, steps = args.warmup or (3 if tiny else 10), args.steps or (10 if tiny else 100)
    started = datetime.datetime.now().astimezone()
    device, peak = device_peak()
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"), "machine": machine(), "device": device, "tiny": tiny,
        "peak_flops": peak, "matmul_flops": matmul_ceiling(1.0 if tiny else 3.0), "arms": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="grokkit-bench-paper-") as tmp:
        for arm in arms(args.modes):
            console.print(f"bench-paper: {arm.name} ...")
            results["arms"].append(measure_or_record(arm, tiny, warmup, steps, Path(tmp), args.data_dir))
            results["elapsed_s"] = (datetime.datetime.now().astimezone() - started).total_seconds()
            atomic_write(args.out, lambda f: f.write(json.dumps(results, indent=1, default=str).encode()))
            # this arm's row, at once: a run cut short still shows the arms it finished
            print(markdown(results).splitlines()[-1], flush=True)
    show(results, console)
    console.print(f"bench-paper: wrote {args.out}")


if __name__ == "__main__":
    main()
