"""The bench's table: rows with targets from the measurements, printed, as Markdown, or from a saved file."""

from __future__ import annotations

import os
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch
from common import Row, interval_text, median
from rich.console import Console
from rich.table import Table


def check(value: float, target: float, at_most: bool) -> bool:
    return value <= target if at_most else value >= target


def failed_row(name: str, part: dict[str, Any], target: str = "") -> Row:
    """The row of a measurement that raised (``bench.attempt``): its error instead of a value."""
    return Row(name, None, "failed", target, None, part["error"])


def anchor_row(anchor: dict[str, Any]) -> Row:
    """grokkit's samples/s against the original studies' style of trainer, both at batch 512, same graph."""
    name = "grokkit / original-style trainer, samples/s, 4 x 128, batch 512, paper-scale graph"
    if "error" in anchor:
        return failed_row(name, anchor, ">= 25")
    if "grokkit_s" not in anchor:
        return Row(name, None, "not measured", ">= 25", None, anchor.get("skipped", "no measurement"))
    ratios = [a / g for a, g in zip(anchor["anchor_s"], anchor["grokkit_s"], strict=False)]
    ratio, batch = median(ratios), anchor["batch_size"]
    return Row(
        name, ratio, f"{ratio:.1f}x", ">= 25", check(ratio, 25, False),
        f"{batch / median(anchor['grokkit_s']):.0f} vs {batch / median(anchor['anchor_s']):.0f} samples/s: "
        f"grokkit's Trainer ({anchor['grokkit_vocab']} tokens, 4 tokens per item, logits at "
        f"{anchor.get('unembedded', 4)} of them) vs HF GPT-2 "
        f"(transformers {anchor['transformers']}, {anchor['anchor_vocab']} tokens, padded to 10, Python collate, "
        f"clipping, loss.item()), dropout {anchor['dropout']}; median of {len(anchor['grokkit_s'])} interleaved "
        f"window pairs of {anchor['window']} steps ({interval_text(ratios, 1, 'x')})",
    )  # fmt: skip


def lightning_default_row(bare: dict[str, Any], batch_size: int) -> Row:
    """A minimal LightningModule on a bare Trainer, with Lightning's defaults, against the plain loop, both on
    the config's own network and data: what Lightning's loop adds to a step before grokkit adds or trims
    anything (grokkit's trainer dispatches hooks for less, ``grokkit/train/dispatch.py``)."""
    name = "Lightning's default step / plain loop step (a minimal LightningModule on a bare Trainer), the config's network"
    if "error" in bare:
        return failed_row(name, bare)
    ratios = [a / b for a, b in zip(bare["grokkit_s"], bare["plain_s"], strict=False)]
    ratio = median(ratios)
    return Row(
        name,
        ratio, f"{ratio:.3f}", "", None,
        f"{median(bare['grokkit_s']) * 1e3:.1f} vs {median(bare['plain_s']) * 1e3:.1f} ms/step (batch {batch_size}); "
        f"no grokkit module, callbacks, logger or progress bar; Lightning's default profiler and hook dispatch; "
        f"median of {len(ratios)} window pairs, interleaved "
        f"({interval_text(ratios, 3)})",
    )  # fmt: skip


def fixed_cost_rows(fixed: dict[str, Any], plain_step: float) -> list[Row]:
    """What a step costs beyond the plain loop whatever the model, on a tiny network: grokkit's Trainer, and
    (when measured) a minimal LightningModule on a bare Trainer with Lightning's defaults."""
    arms = [
        (
            "grokkit's own cost per step (Trainer - plain loop, 2 layers x 8 wide, batch 8)",
            fixed,
            "the config's callbacks, logger and progress bar",
        )
    ]
    if "lightning" in fixed:
        arms.append(
            (
                "Lightning's default Trainer, for comparison (a minimal LightningModule on a bare Trainer - plain loop)",
                fixed["lightning"],
                "no grokkit module, callbacks, logger or progress bar; Lightning's default profiler and hook "
                "dispatch; the same network and data",
            )
        )
    rows = []
    for name, arm, what in arms:
        if "error" in arm:
            rows.append(failed_row(name, arm))
            continue
        extra = [(a - b) * 1e3 for a, b in zip(arm["grokkit_s"], arm["plain_s"], strict=False)]
        cost = median(extra)
        rows.append(Row(
            name, cost, f"{cost:.2f} ms", "", None,
            f"{median(arm['grokkit_s']) * 1e3:.2f} vs {median(arm['plain_s']) * 1e3:.2f} ms/step, {what}; median "
            f"of {len(extra)} window pairs ({interval_text(extra, 2, ' ms')}); {cost / 1e3 / plain_step:.3f} of the "
            "plain loop's step above",
        ))  # fmt: skip
    return rows


def grok_row(name: str, grok: dict[str, Any], baseline: dict[str, Any] | None = None) -> Row:
    """Steps (and minutes) to memorization and to ID test 0.5 / 0.9; against ``baseline``, the ratio of the
    steps and of the wall time to ID test 0.9 (``>`` when this run ended without holding 0.9)."""
    if "error" in grok:
        return failed_row(name, grok)
    if "steps" not in grok:
        return Row(name, None, "not measured", "", None, grok["source"])
    s, w = grok["steps"], grok["wall_s"]

    def at(key: str) -> str:
        return "-" if s[key] is None else f"{s[key]}" + (f" ({w[key] / 60:.1f} min)" if w.get(key) else "")

    shown = f"t_mem {at('t_mem')}; t_gen iid 0.5: {at('t_gen_iid_0.5')}, 0.9: {at('t_gen_iid_0.9')}"
    detail = f"label {grok.get('label')}; t_gen ood 0.5: {at('t_gen_ood_0.5')}; run ended at {at('end')}; "
    if baseline is not None and "steps" in baseline and baseline["steps"]["t_gen_iid_0.9"]:
        base_steps, base_wall = baseline["steps"]["t_gen_iid_0.9"], baseline["wall_s"]["t_gen_iid_0.9"]
        reached = s["t_gen_iid_0.9"] is not None
        key = "t_gen_iid_0.9" if reached else "end"
        bound = "" if reached else ">"
        detail += f"{bound}{s[key] / base_steps:.2f}x the default's steps to ID test 0.9"
        if w.get(key) and base_wall:
            detail += f", {bound}{w[key] / base_wall:.2f}x its wall time"
        detail += "; "
    return Row(
        name, s["t_gen_iid_0.9"], shown, "", None, f"{detail}from {grok['source']}: `{grok.get('command')}`"
    )


def study_row(study: dict[str, Any]) -> Row:
    """Wall time to the five-regime study's labels at CPU scale (``make study``)."""
    name = "wall time to the study's labels, CPU scale (make study)"
    if "error" in study:
        return failed_row(name, study)
    if "runs" not in study:
        return Row(name, None, "not measured", "", None, study.get("source", "no study run"))
    wall = study["study_minutes"]
    shown = f"{wall:.0f} min" if wall is not None else "-"
    return Row(
        name, wall, shown, "", None,
        f"{study['runs']} runs ({study['trial_minutes']:.0f} run-minutes), {study['agree']} with He et al.'s "
        f"label; from {study['source']}",
    )  # fmt: skip


def dropout_row(b: dict[str, Any]) -> Row:
    ours, torchs = b["step_s"]["dropout/grokkit"], b["step_s"]["dropout/torch"]
    ratios = [a / t for a, t in zip(ours, torchs, strict=False)]
    shape = " x ".join(str(size) for size in b["dropout"]["shape"])
    path = (
        "the bit mask of grokkit/models/dropout.py: PyTorch's CPU Bernoulli draws element by element here"
        if b["dropout"].get("bit_mask", True)
        else "PyTorch's own: PyTorch's CPU Bernoulli does not draw element by element here (MKL)"
    )
    return Row(
        f"dropout on CPU, grokkit's / PyTorch's F.dropout, p {b['dropout']['p']}",
        median(ratios),
        f"{median(ratios):.3f}",
        "",
        None,
        f"{median(ours) * 1e3:.2f} vs {median(torchs) * 1e3:.2f} ms per ({shape}) activation; grokkit's is "
        f"{path}; median of {len(ratios)} rounds ({interval_text(ratios, 3)})",
    )


def rows_from(
    g: dict[str, Any],
    b: dict[str, Any],
    grok: dict[str, Any],
    anchor: dict[str, Any] | None = None,
    study: dict[str, Any] | None = None,
    accelerated: dict[str, dict[str, Any]] | None = None,
    fixed: dict[str, Any] | None = None,
    host_reads: dict[str, Any] | None = None,
) -> list[Row]:
    rows: list[Row] = []
    step_g, step_p = median(g["grokkit_s"]), median(g["plain_s"])
    # Each grokkit window against the plain window just before it: slow drifts in load cancel pairwise.
    ratios = [a / b for a, b in zip(g["grokkit_s"], g["plain_s"], strict=False)]
    ratio = median(ratios)
    rows.append(
        Row(
            "grokkit step / plain loop step",
            ratio,
            f"{ratio:.3f}",
            "<= 1.05",
            check(ratio, 1.05, True),
            f"{step_g * 1e3:.1f} vs {step_p * 1e3:.1f} ms/step (batch {g['batch_size']}, {g['threads']} threads); "
            f"median of {len(g['grokkit_s'])} window pairs of {g['window_steps']} steps, interleaved ("
            f"{interval_text(ratios, 3)})",
        )
    )

    if "lightning" in g:
        rows.append(lightning_default_row(g["lightning"], g["batch_size"]))
    if fixed is not None:
        rows.extend(fixed_cost_rows(fixed, step_p))

    n, interval = g["nominal_steps"], g["val_interval"]
    t_val = median(g["validation_s"])
    probe_cost = {
        name: median(times) * g["probe_runs"][name] for name, times in g["probe_s"].items() if times
    }
    base = n * step_g + (n // interval) * t_val
    probes_ratio = (base + sum(probe_cost.values())) / base
    listed = ", ".join(
        f"{g['probe_classes'][name]} {median(g['probe_s'][name]) * 1e3:.0f} ms x{g['probe_runs'][name]}"
        for name in g["probe_s"]
    )
    per_step = {name: hooks for name, hooks in g["probe_per_step_hooks"].items() if hooks}
    rows.append(
        Row(
            "training with default probes / without",
            probes_ratio,
            f"{probes_ratio:.3f}",
            "<= 1.10",
            check(probes_ratio, 1.10, True),
            f"over a {n}-step run validating every {interval}: {listed or 'no probe available'} "
            f"({g['probes_source']}); per-step probe hooks: {per_step or 'none'}",
        )
    )

    fraction = t_val / (interval * step_g)
    rows.append(
        Row(
            "validation pass / training between validations",
            fraction,
            f"{fraction:.4f}",
            "<= 0.05",
            check(fraction, 0.05, True),
            f"{t_val * 1e3:.0f} ms (all 5 splits, hook to hook, probes excluded; median of {len(g['validation_s'])}) "
            f"vs {interval} x {step_g * 1e3:.1f} ms",
        )
    )

    rows.extend(batch512_rows(b, g))
    rows.append(anchor_row(anchor or {"skipped": "not part of this run"}))

    write = {kind: median(times) for kind, times in g["checkpoint_s"].items()}
    ckpt_cost = sum(write[kind] * g["checkpoint_writes"][kind] for kind in write)
    rows.append(
        Row(
            "periodic checkpoint writes / training time",
            ckpt_cost / (n * step_g),
            f"{ckpt_cost / (n * step_g):.4f}",
            "",
            None,
            f"{g['checkpoint_writes']['trajectory']} trajectory ({write['trajectory'] * 1e3:.0f} ms) + "
            f"{g['checkpoint_writes']['last']} last.ckpt ({write['last'] * 1e3:.0f} ms) writes in {n} steps; "
            "kept out of the step windows above",
        )
    )

    if host_reads is not None:
        rows.extend(host_read_rows(host_reads))

    rows.append(grok_row("steps (wall) to grok, default config", grok))
    for accelerator, result in (accelerated or {}).items():
        rows.append(grok_row(f"steps (wall) to grok, default config + {accelerator}", result, grok))
    rows.append(study_row(study or {"source": "not part of this run"}))
    return rows


def print_table(rows: list[Row], header: str, console: Console) -> None:
    table = Table(title=header, show_lines=False)
    for column in ("measure", "value", "target", "", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        status = "" if row.passed is None else "[green]PASS[/]" if row.passed else "[red]MISS[/]"
        table.add_row(row.name, row.shown, row.target, status, row.detail)
    console.print(table)


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "cpu": model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2 / AVX512: the kernels, so the rounding
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
    }


def host_read_row(name: str, counted: dict[str, Any], what: str) -> Row:
    """Host reads per step of a :class:`step_clock.HostReadWindow` count, with the lines that asked for them."""
    reads = sum(counted["host_reads"].values()) / max(1, counted["host_read_steps"])
    sites = "; ".join(f"{site} x{count}" for site, count in Counter(counted["host_reads"]).most_common(4))
    return Row(
        name,
        reads,
        f"{reads:.2f}",
        "",
        None,
        f"over {counted['host_read_steps']} steps ({what}): {sites or 'none'}",
    )


def host_read_rows(host_reads: dict[str, Any]) -> list[Row]:
    """Host reads per step over one logging interval of a tiny fit, on a CPU's check schedule and on an
    accelerator's (``grokkit_arm.count_host_reads``)."""
    names = {
        "cpu": "host reads per training step, the check read every step as on a CPU",
        "accelerator": "host reads per training step, the check read every {every} steps as on a GPU",
    }
    if "error" in host_reads:
        return [failed_row(name.format(every="N"), host_reads) for name in names.values()]
    what = "2 layers x 8 wide, one logging step inside; reads from Python only (.item(), .tolist(), bool(), ...): a sync inside a kernel is not counted"
    return [
        host_read_row(names[schedule].format(every=counted["check_every"]), counted, what)
        for schedule, counted in host_reads.items()
    ]


def busy_text(load: dict[str, Any]) -> str:
    """What the bench measured of other processes' use of the cores (older results: the load average)."""
    if "busy_cores" in load:
        return f"other processes busy on {load['busy_cores']:.1f} cores"
    return f"load average {load['start'][0]:.1f}"


def header_of(results: dict[str, Any]) -> str:
    info, load = results["machine"], results["load_average"]
    return (
        f"grokkit bench {results['date'][:16].replace('T', ' ')} - {info['cpu']}"
        f"{' (' + info['cpu_capability'] + ')' if 'cpu_capability' in info else ''}, {info['cores']} cores, "
        f"{info['threads']} threads, {'CUDA' if info['cuda'] else 'no GPU'}; load {load['start'][0]:.1f} -> "
        f"{load['end'][0]:.1f}; {results['elapsed_s']:.0f} s{' (QUICK: noise)' if results['quick'] else ''}"
    )


def markdown(rows: list[Row]) -> str:
    """The table as Markdown, for bench/RESULTS.md."""
    lines = ["| measure | value | target | | detail |", "|---|---|---|---|---|"]
    for row in rows:
        status = "" if row.passed is None else "PASS" if row.passed else "**MISS**"
        lines.append(f"| {row.name} | {row.shown} | {row.target} | {status} | {row.detail} |")
    return "\n".join(lines)


def report(results: dict[str, Any], console: Console, as_markdown: bool = False) -> None:
    """Print the table of a results dict (fresh, or loaded from a results.json)."""
    measured = results["raw"]
    rows = rows_from(
        measured["grokkit"],
        measured["batch512"],
        measured["grok"],
        measured.get("anchor"),
        measured.get("study"),
        measured.get("grok_accelerated"),
        measured.get("fixed"),
        measured.get("host_reads"),
    )
    if as_markdown:
        print(f"{header_of(results)}\n\n{markdown(rows)}")
        return
    print_table(rows, header_of(results), console)
    if results["load_average"]["busy"]:  # other processes shared the cores: absolute times are inflated
        console.print(
            f"[yellow]bench: the machine was busy ({busy_text(results['load_average'])} before the bench on "
            f"{results['machine']['cores']} cores); ms/step and GFLOP/s are inflated, "
            "the interleaved ratios less so[/]"
        )


FLOP_TARGETS = {"4x128": 0.6, "8x256": 0.8}
CEILING_ROW = "fp32 matmul FLOP/s (ceiling)"


def flop_row_name(shape: str) -> str:
    return f"training FLOP/s / matmul FLOP/s, {shape.replace('x', ' layers x ')}, batch 512"


def batch512_rows(b: dict[str, Any], g: dict[str, Any]) -> list[Row]:
    """The FLOP fractions against the matmul ceiling, attention, torch.compile and dropout, at batch 512."""
    if "error" in b:
        shapes = [(flop_row_name(shape), f">= {target}") for shape, target in FLOP_TARGETS.items()]
        return [failed_row(name, b, target) for name, target in [*shapes, (CEILING_ROW, "")]]
    peak = b["matmul_flops"] / median(b["step_s"]["matmul"])
    rows = [flop_fraction_row(b, g, shape, target, peak) for shape, target in FLOP_TARGETS.items()]
    for shape in ("4x128", "8x256"):
        rows += kernel_choice_rows(b, shape, peak)
    if "dropout/grokkit" in b["step_s"]:
        rows.append(dropout_row(b))
    detail = f"{b['matmul_n']}^2 x {b['matmul_n']}^2, {g['threads']} threads, median of {len(b['step_s']['matmul'])} windows"
    return [*rows, Row(CEILING_ROW, peak, f"{peak / 1e9:.0f} G", "", None, detail)]


def flop_fraction_row(b: dict[str, Any], g: dict[str, Any], shape: str, target: float, peak: float) -> Row:
    """Training FLOP/s of one shape against the matmul ceiling: each round's step window against the matmul
    window of the same round, as for the step ratio."""
    step = median(b["step_s"][f"{shape}/manual"])
    achieved = b["flops_per_step"][shape] / step
    rounds = [
        b["flops_per_step"][shape] / model_s / (b["matmul_flops"] / matmul_s)
        for model_s, matmul_s in zip(b["step_s"][f"{shape}/manual"], b["step_s"]["matmul"], strict=False)
    ]
    fraction = median(rounds)
    return Row(
        flop_row_name(shape),
        fraction,
        f"{fraction:.3f}",
        f">= {target}",
        check(fraction, target, False),
        f"median of {len(rounds)} rounds ({interval_text(rounds, 3)}); medians "
        f"{achieved / 1e9:.0f} of {peak / 1e9:.0f} GFLOP/s ({b['flops_per_step'][shape] / 1e9:.1f} GFLOP/step, "
        f"{step * 1e3:.0f} ms/step, manual attention = grokkit's CPU default, the default config's "
        f"{g['activation']} activation)",
    )


def kernel_choice_rows(b: dict[str, Any], shape: str, peak: float) -> list[Row]:
    """SDPA against the manual attention, and torch.compile against eager (where timed), at one shape."""
    manual, sdpa = median(b["step_s"][f"{shape}/manual"]), median(b["step_s"][f"{shape}/sdpa"])
    faster = "manual is faster" if manual < sdpa else "sdpa is faster"
    rows = [
        Row(
            f"attention sdpa / manual step time, {shape}, batch 512",
            sdpa / manual,
            f"{sdpa / manual:.3f}",
            "",
            None,
            f"sdpa {sdpa * 1e3:.0f} vs manual {manual * 1e3:.0f} ms/step: {faster}",
        )
    ]
    if f"{shape}/compiled" in b["step_s"]:
        compiled = median(b["step_s"][f"{shape}/compiled"])
        share = b["flops_per_step"][shape] / compiled / peak
        rows.append(
            Row(
                f"torch.compile / eager step time, {shape}, batch 512",
                compiled / manual,
                f"{compiled / manual:.3f}",
                "",
                None,
                f"compiled {compiled * 1e3:.0f} ms/step ({share:.2f} of matmul FLOP/s) after a "
                f"{b['compile_s'][shape]:.0f} s compile",
            )
        )
    return rows
