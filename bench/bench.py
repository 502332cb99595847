"""``make bench``: grokkit's speed as ratios measured side by side, in one run, on this machine.

Absolute step times mean little on a shared machine, so every figure is a ratio of two things measured in
the same process, interleaved in short windows (A, B, A, B, ...) and summarized by medians:

* grokkit's real ``Trainer`` + ``GrokModule`` + ``TwoHopDataModule`` step vs a plain PyTorch loop running
  the same ``Decoder``, batch, token table, fused AdamW and loss (``item_losses``), and beside it a minimal
  ``LightningModule`` on a bare ``Trainer`` with Lightning's defaults vs the same loop;
* the default probes and one validation pass, timed with ``Trainer.validate`` and amortized at the
  configured intervals;
* achieved training FLOP/s vs this machine's fp32 matmul FLOP/s, and SDPA vs manual attention, at batch 512;
* steps and wall time to grok, from the newest default run's ``summary.json`` (or a fresh run, ``--grok``),
  and of the default with Grokfast and with StableMax (``runs/default-grokfast``, ``runs/default-stablemax``;
  ``--grok-accelerators`` trains them), against the default;
* wall time to the five-regime study's labels at CPU scale, from ``make study``'s table.

Prints a table with the targets and writes the same as ``bench/out/results.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import FULL, OUT, QUICK, ROOT, busy_cores, one_line

sys.path.insert(0, str(ROOT))  # grokkit and plugins/ import from the checkout, as `grokkit fit` does

import torch  # noqa: E402
from anchor_loop import measure_anchor  # noqa: E402
from bare_lightning import measure_lightning_default  # noqa: E402
from batch512 import measure_batch512  # noqa: E402
from grokkit_arm import (  # noqa: E402
    TINY_NETWORK,
    count_host_reads,
    load_config,
    measure_fixed_cost,
    measure_grokkit,
)
from report import machine, report, rows_from  # noqa: E402
from rich.console import Console  # noqa: E402
from time_to_grok import ACCELERATORS, grok_result, study_result  # noqa: E402

from grokkit.atomic import atomic_write  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny windows: checks that the bench runs, numbers are noise"
    )
    parser.add_argument(
        "--grok",
        action="store_true",
        help="also train the default config to grokking (~14-16 min on a 2-core AMD EPYC at its 2 threads)",
    )
    parser.add_argument(
        "--grok-accelerators",
        action="store_true",
        help="also train the default with Grokfast and with StableMax to grokking (~15 min each at its 2 threads)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile at batch 512 (cold compile: ~1 min)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: the config's, as `grokkit fit` runs it)",
    )
    parser.add_argument("--out", type=Path, default=OUT / "results.json")
    parser.add_argument("--show", type=Path, help="only print the table of a saved results.json")
    parser.add_argument("--markdown", action="store_true", help="with --show: print it as Markdown")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 170)  # a wide table in logs and pipes
    if args.show:
        report(json.loads(args.show.read_text()), console, args.markdown)
        return
    args.out = args.out.resolve()  # from the caller's directory, before the bench moves to the checkout's
    os.chdir(ROOT)  # data/ and runs/ resolve as they do for `make fit`
    settings = QUICK if args.quick else FULL
    config, raw, config_source = load_config()
    threads = args.threads or raw.get("threads") or torch.get_num_threads()
    torch.set_num_threads(threads)  # every arm, grokkit's CLI included, runs on these threads
    others = busy_cores()
    started, load_before = datetime.datetime.now().astimezone(), os.getloadavg()
    console.print(
        f"bench: config {config_source}; {torch.get_num_threads()} threads; other processes busy on "
        f"{others:.2f} cores; load average {load_before[0]:.2f}"
    )

    with tempfile.TemporaryDirectory(prefix="grokkit-bench-") as tmp:
        console.print("bench: grokkit vs plain loop, validation, probes ...")
        g = measure_grokkit(settings, config, raw, Path(tmp), threads)  # every later part needs it: no guard
        timed = (settings, config, Path(tmp), threads, g["window_steps"])  # a timed fit's arguments
        fixed = attempt(console, "the fixed cost", measure_fixed_cost, *timed)
        # Lightning's row on the tiny network stands even if grokkit's failed
        lightning = ("Lightning's default Trainer, tiny network", measure_lightning_default)
        fixed["lightning"] = attempt(console, *lightning, *timed, TINY_NETWORK)
        g["lightning"] = attempt(
            console, "Lightning's default Trainer", measure_lightning_default, *timed, []
        )
        host_reads = attempt(
            console, "the host reads", count_host_reads, config, Path(tmp), threads, g["log_every"]
        )
    console.print("bench: batch 512 (attention, FLOPs, matmul ceiling) ...")
    b = attempt(console, "batch 512", measure_batch512, settings, g, args.compile)
    console.print("bench: grokkit vs the original-style trainer (HF GPT-2), batch 512, paper-scale graph ...")
    with tempfile.TemporaryDirectory(prefix="grokkit-bench-anchor-") as tmp:
        anchor = attempt(console, "the original-style trainer", measure_anchor, settings, Path(tmp), threads)
    grok = attempt(console, "steps to grok", grok_result, raw, config, args.grok)
    accelerated = {
        name: attempt(
            console, f"steps to grok with {name}", grok_result, raw, config, args.grok_accelerators, name
        )
        for name in ACCELERATORS
    }
    study = attempt(console, "the study's wall time", study_result)
    elapsed, load_after = (datetime.datetime.now().astimezone() - started).total_seconds(), os.getloadavg()

    g.pop("table")
    g["network"] = str(g["network"])
    g["module_hparams"] = {k: str(v) for k, v in g["module_hparams"].items()}
    results = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": args.quick,
        "config": config_source,
        "elapsed_s": elapsed,
        # busy: other processes' use of the cores over 2 s just before the bench (the load average also
        # counts whatever ended within the last minutes, the bench's own work at the end)
        "load_average": {
            "start": load_before,
            "end": load_after,
            "busy_cores": others,
            "busy": others > 0.5 * os.cpu_count(),
        },
        "raw": {
            "grokkit": g,
            "fixed": fixed,
            "batch512": b,
            "grok": grok,
            "grok_accelerated": accelerated,
            "anchor": anchor,
            "study": study,
            "host_reads": host_reads,
        },
    }
    try:
        rows = rows_from(g, b, grok, anchor, study, accelerated, fixed, host_reads)
        results["rows"] = [row.__dict__ for row in rows]
    finally:  # the measurements reach the disk even if turning them into rows fails
        atomic_write(args.out, lambda f: f.write(json.dumps(results, indent=1, default=str).encode()))
    console.print(f"bench: wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    report(results, console)


def attempt(
    console: Console, part: str, measure: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """One part of the bench, or its error in one line: a part that fails (a missing extra, a run that
    diverges) leaves the others' rows, after minutes of measuring them."""
    try:
        return measure(*args)
    except Exception as error:  # its row says "failed" with this line; the traceback goes to the log
        traceback.print_exc()
        console.print(f"[red]bench: {part} failed: {one_line(error)}[/]")
        return {"error": one_line(error)}


if __name__ == "__main__":
    main()
