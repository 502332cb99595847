"""``make bench``: grokkit's speed as ratios measured side by side, in one run, on this machine.

Absolute step times mean little on a shared machine, so every figure is a ratio of two things measured in
the same process, interleaved in short windows (A, B, A, B, ...) and summarized by medians:

* grokkit's real ``Trainer`` + ``GrokModule`` + ``TwoHopDataModule`` step vs a plain PyTorch loop running
  the same ``Decoder``, batch, token table, fused AdamW and loss (``item_loss_and_correct``);
* the default probes and one validation pass, timed with ``Trainer.validate`` and amortized at the
  configured intervals;
* achieved training FLOP/s vs this machine's fp32 matmul FLOP/s, and SDPA vs manual attention, at batch 512;
* steps and wall time to grok, from the newest default run's ``summary.json`` (or a fresh run, ``--grok``).

Prints a table with the targets and writes the same as ``bench/out/results.json``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # grokkit and plugins/ import from the checkout, as `grokkit fit` does

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.callbacks import Callback, RichProgressBar  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from grokkit.checkpointing import TrajectoryCheckpoint  # noqa: E402
from grokkit.cli import TRAINER_DEFAULTS, GrokkitCLI, GrokkitParser  # noqa: E402
from grokkit.data import TwoHopDataModule  # noqa: E402
from grokkit.models import Decoder  # noqa: E402
from grokkit.module import GrokModule, item_loss_and_correct  # noqa: E402
from grokkit.probes.base import Probe  # noqa: E402
from grokkit.schedule import is_log_spaced  # noqa: E402

OUT = ROOT / "bench" / "out"
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
# The settings the issue names for when configs/default.yaml does not exist yet.
FALLBACK_CONFIG = {
    "trainer": {"val_check_interval": 200},
    "model": {
        "network": {
            "class_path": "grokkit.models.Decoder",
            "init_args": {"d_model": 128, "n_heads": 4, "n_layers": 4},
        },
        "lr": 1.0e-3,
    },
    "data": {
        "n_entities": 100,
        "n_relations": 50,
        "out_degree": 20,
        "phi": 9.0,
        "eval_size": 1000,
        "batch_size": 128,
    },
}
# Probes that may exist (another developer is finishing some); used when the config lists none.
PROBE_CLASSES = {
    "logit_lens": "LogitLens",
    "causal_tracing": "CausalTracing",
    "circuit": "CircuitDetector",
    "onset": "GrokkingOnset",
    "classifier": "RunClassifier",
}
NOMINAL_STEPS = 20_000  # run length over which periodic costs are amortized when the config sets none
PLUMBING = ("/torch/", "lightning_utilities/", "fabric/utilities/", "logger_connector/", "trainer/trainer.py")
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


@dataclass
class Settings:
    """How long to measure: ``--quick`` shrinks everything to check that the script runs."""

    warmup_steps: int  # grokkit and plain-loop steps before the first timed window
    window_steps: int | None  # steps per grokkit / plain window; None: the config's log_every_n_steps,
    # so that every window holds exactly one logging event
    windows: int  # timed windows per arm
    validations: int  # extra Trainer.validate passes that time validation and probes
    window_s: float  # seconds per window at batch 512 and for matmuls
    matmul_n: int  # square matmul size
    warmup_512: int  # untimed steps per batch-512 arm


FULL = Settings(
    warmup_steps=30, window_steps=None, windows=9, validations=5, window_s=2.5, matmul_n=2048, warmup_512=3
)
QUICK = Settings(
    warmup_steps=5, window_steps=10, windows=2, validations=1, window_s=0.3, matmul_n=1024, warmup_512=1
)


@dataclass
class Row:
    """One line of the table: a measured value, its target (if any) and where it comes from."""

    name: str
    value: float | None
    shown: str
    target: str = ""
    passed: bool | None = None  # None: no target (information only) or not measured
    detail: str = ""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ----------------------------------------------------------------------------------------------------------
# Plain PyTorch: the loop grokkit is compared with, and the machine's matmul ceiling
# ----------------------------------------------------------------------------------------------------------
class PlainLoop:
    """The same model, batch, data, optimizer and loss as grokkit, with nothing around them."""

    def __init__(
        self, model: torch.nn.Module, table: torch.Tensor, batch_size: int, module_hparams: dict
    ) -> None:
        self.model, self.table, self.batch_size = model.train(), table, batch_size
        decayed = [p for p in model.parameters() if p.dim() >= 2 or module_hparams["decay"] == "all"]
        others = [p for p in model.parameters() if not (p.dim() >= 2 or module_hparams["decay"] == "all")]
        groups = [
            {"params": decayed, "weight_decay": module_hparams["weight_decay"]},
            {"params": others, "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(
            groups, lr=module_hparams["lr"], betas=module_hparams["betas"], fused=True
        )
        self.generator = torch.Generator(device=table.device).manual_seed(0)

    def step(self) -> None:
        rows = torch.randint(
            len(self.table), (self.batch_size,), generator=self.generator, device=self.table.device
        )
        inputs, targets = self.model.inputs_and_targets(self.table[rows])
        loss = item_loss_and_correct(self.model(inputs), targets)[0].mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - start


def timed_window(step: Callable[[], None], seconds: float, min_steps: int = 1) -> float:
    """Seconds per call of ``step``, calling it for at least ``seconds`` (and ``min_steps`` times)."""
    calls, start = 0, time.perf_counter()
    while calls < min_steps or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return (time.perf_counter() - start) / calls


def matmul_step(n: int) -> tuple[Callable[[], None], float]:
    """A square fp32 matmul of size ``n`` and its FLOPs."""
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    return (lambda: torch.mm(a, b, out=c)), 2.0 * n**3


def train_flops_per_step(model: Decoder, batch_size: int, seq_len: int) -> float:
    """6 x weights applied per token x tokens: block matrices once per application, plus the unembedding
    (the decoder computes logits at every position). Biases, norms and attention scores are left out."""
    block_weights = sum(p.numel() for p in model.blocks.parameters() if p.dim() >= 2)
    applied = block_weights * model.n_layers / len(model.blocks) + model.wte.weight.numel()
    return 6.0 * applied * batch_size * seq_len


# ----------------------------------------------------------------------------------------------------------
# grokkit through its real CLI objects, with a clock callback
# ----------------------------------------------------------------------------------------------------------
class StepClock(Callback):
    """Times grokkit's steps in windows and runs ``between`` (the plain loop) after each one: A, B, A, B.

    A window's time runs from the end of ``between`` to the ``on_train_batch_end`` ``window`` steps later,
    so it holds whole steps: data fetch, transfer hook, forward, backward, optimizer, logging, callbacks.
    Validations (and the probes they run) inside a window are timed hook to hook and subtracted.
    """

    def __init__(self, warmup: int, window: int, windows: int, between: Callable[[], float]) -> None:
        self.warmup, self.window, self.windows, self.between = warmup, window, windows, between
        self.grokkit: list[float] = []  # seconds per step, one entry per window
        self.plain: list[float] = []
        self.validations: list[dict[str, float]] = []  # {"total": s, <probe>: s, ...} per validation
        self.started = 0.0
        self.excluded = 0.0

    # ----- training windows -----
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx
    ) -> None:
        now, step = time.perf_counter(), trainer.global_step
        if step < self.warmup or (step - self.warmup) % self.window:
            return
        if step > self.warmup:
            self.grokkit.append((now - self.started - self.excluded) / self.window)
        if len(self.plain) < self.windows:
            self.plain.append(self.between() / self.window)
        self.started, self.excluded = time.perf_counter(), 0.0

    # ----- validations and probes -----
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validations.append({"start": time.perf_counter()})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Registered last, so this runs after every probe's on_validation_end.
        record = self.validations[-1]
        record["total"] = time.perf_counter() - record.pop("start")
        self.excluded += record["total"]

    def time_probe(self, probe: Probe) -> None:
        """Wrap ``probe.run`` so each run's seconds land in the current validation's record."""
        run = probe.run

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                self.validations[-1][probe.name] = time.perf_counter() - start

        probe.run = timed  # type: ignore[method-assign]


@contextmanager
def counting_host_reads(counter: Counter[str]) -> Iterator[None]:
    """Count tensor -> Python reads (``.item()``, ``bool(t)``, ``float(t)``, ...) by their calling line.

    On a GPU each one is a host sync; on this CPU the count only shows where one would happen.
    """
    originals = {name: torch.Tensor.__dict__.get(name) for name in HOST_READS}

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counter[f"{name.strip('_')}() in {read_site(traceback.extract_stack()[:-1])}"] += 1
            return original(self, *args, **kwargs)

        return counted

    for name in HOST_READS:
        setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
    try:
        yield
    finally:
        for name, original in originals.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


def read_site(frames: list[traceback.FrameSummary]) -> str:
    """Who asked for a host read: the innermost grokkit frame, else the innermost frame that is not plumbing
    (torch, Lightning's metric conversion and logger connector)."""
    inner_first = list(reversed(frames))
    frame = next((f for f in inner_first if f.filename.startswith(f"{ROOT}/grokkit/")), None) or next(
        (f for f in inner_first if not any(part in f.filename for part in PLUMBING)), None
    )
    return "?" if frame is None else f"{frame.name} ({short_path(frame.filename)}:{frame.lineno})"


def short_path(filename: str) -> str:
    """``lightning/pytorch/...`` or ``grokkit/...`` instead of an absolute path."""
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class HostReadWindow(Callback):
    """Counts host reads over whole training steps ``start`` -> ``stop`` (inside the untimed warm-up)."""

    def __init__(self, start: int, steps: int) -> None:
        self.start, self.stop = start, start + steps
        self.counter: Counter[str] = Counter()
        self.context: Any = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.start and self.context is None:
            self.context = counting_host_reads(self.counter)
            self.context.__enter__()
        elif trainer.global_step == self.stop and self.context is not None:
            self.context.__exit__(None, None, None)
            self.context = None


def load_config() -> tuple[Path, dict[str, Any], str]:
    """The default config (or the issue's fallback settings written to a file) and where it came from."""
    if DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG, yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}, "configs/default.yaml"
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "fallback_config.yaml"
    path.write_text(yaml.safe_dump(FALLBACK_CONFIG))
    return path, FALLBACK_CONFIG, "issue's fallback settings (configs/default.yaml does not exist yet)"


def build_grokkit(config: Path, overrides: list[str]) -> GrokkitCLI:
    """Model, data and trainer exactly as ``grokkit fit --config`` builds them, without running."""
    try:  # plugin probes registered as entry points, as `grokkit` loads them (newer checkouts only)
        from grokkit.probes.registry import load_entry_point_probes
    except ImportError:
        pass
    else:
        load_entry_point_probes()
    return GrokkitCLI(
        GrokModule,
        TwoHopDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        parser_class=GrokkitParser,
        auto_configure_optimizers=False,
        save_config_callback=None,
        run=False,
        args=["--config", str(config), *overrides],
    )


def available_probes() -> list[Probe]:
    """Every probe class that imports, at its default settings (used when the config lists no probe)."""
    probes = []
    for module_name, class_name in PROBE_CLASSES.items():
        try:
            module = __import__(f"grokkit.probes.{module_name}", fromlist=[class_name])
            probes.append(getattr(module, class_name)())
        except (ImportError, AttributeError):
            continue
    return sorted(probes, key=lambda probe: probe.stage)


def runs_in(probe: Probe, steps: int, val_interval: int) -> int:
    """How often ``probe`` runs at its own schedule in a ``steps``-step run validating every ``val_interval``."""
    twin = copy.copy(probe)
    twin.last_run_step, runs = None, 0
    for step in range(val_interval, steps + 1, val_interval):
        if twin.is_due(step):
            twin.last_run_step, runs = step, runs + 1
    return runs


def per_step_hooks(probe: Probe) -> list[str]:
    """Callback hooks a probe overrides that run on every training step (their cost is in the step time)."""
    hooks = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
             "on_before_optimizer_step", "on_before_zero_grad")  # fmt: skip
    return [hook for hook in hooks if getattr(type(probe), hook) is not getattr(Callback, hook)]


def measure_grokkit(settings: Settings, config: Path, raw: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Grokkit vs the plain loop, interleaved in one fit; then validations, probes and checkpoint writes."""
    trainer_raw = raw.get("trainer", {}) or {}
    log_every = int(trainer_raw.get("log_every_n_steps", TRAINER_DEFAULTS["log_every_n_steps"]))
    val_interval = int(trainer_raw.get("val_check_interval", TRAINER_DEFAULTS["val_check_interval"]))
    max_steps = int(trainer_raw.get("max_steps", -1))
    nominal = max_steps if max_steps > 0 else NOMINAL_STEPS
    window = settings.window_steps or log_every
    total = settings.warmup_steps + settings.windows * window
    cli = build_grokkit(
        config,
        [
            f"--trainer.max_steps={total}",
            "--trainer.max_time=null",
            f"--trainer.logger.init_args.save_dir={tmp}",
            "--trainer.logger.init_args.name=bench",
            "--trajectory.min_step=1000000000000",  # periodic checkpoint writes are timed separately below
            f"--checkpoint.every_n_train_steps={10 * total}",
        ],
    )
    module, data, trainer = cli.model, cli.datamodule, cli.trainer
    for callback in trainer.callbacks:
        if isinstance(callback, RichProgressBar):  # keep its cost, hide its output
            callback._console_kwargs = {"file": open(os.devnull, "w"), "force_terminal": True}  # noqa: SIM115
    probes = [c for c in trainer.callbacks if isinstance(c, Probe)]
    probes_source = "configured"
    if not probes:
        probes, probes_source = available_probes(), "defaults of every probe class that imports"
        trainer.callbacks.extend(probes)

    data.setup("fit")
    plain = PlainLoop(
        copy.deepcopy(module.net), data.split_items("train"), data.batch_size, dict(module.hparams)
    )
    plain_warm = {"done": False}

    def between() -> float:
        if not plain_warm["done"]:
            plain.run(settings.warmup_steps)
            plain_warm["done"] = True
        return plain.run(window)

    clock = StepClock(settings.warmup_steps, window, settings.windows, between)
    for probe in probes:
        clock.time_probe(probe)
    host = HostReadWindow(start=2, steps=settings.warmup_steps - 3)
    trainer.callbacks.extend([host, clock])  # last, so the clock sees a validation end after the probes
    trainer.fit(module, datamodule=data)
    in_fit = len(clock.validations)

    for _ in range(settings.validations):  # `validate` runs every probe once, whatever its schedule
        trainer.validate(module, datamodule=data, verbose=False)

    checkpoint = {"trajectory": [], "last": []}
    for index in range(settings.validations):
        for kind, weights_only in (("trajectory", True), ("last", False)):
            start = time.perf_counter()
            trainer.save_checkpoint(tmp / f"bench-{kind}-{index}.ckpt", weights_only=weights_only)
            checkpoint[kind].append(time.perf_counter() - start)

    trajectory = TrajectoryCheckpoint(**(raw.get("trajectory") or {}))  # the configured schedule
    names = [probe.name for probe in probes]
    measured = [v for v in clock.validations if "total" in v]
    val_only = [v["total"] - sum(v.get(name, 0.0) for name in names) for v in measured]
    return {
        "grokkit_s": clock.grokkit,
        "plain_s": clock.plain,
        "window_steps": window,
        "batch_size": data.batch_size,
        "threads": torch.get_num_threads(),
        "validation_s": val_only,
        "validations_in_fit": in_fit,
        "probe_s": {name: [v[name] for v in measured if name in v] for name in names},
        "probe_runs": {probe.name: runs_in(probe, nominal, val_interval) for probe in probes},
        "probe_classes": {probe.name: type(probe).__name__ for probe in probes},
        "probe_per_step_hooks": {probe.name: per_step_hooks(probe) for probe in probes},
        "probes_source": probes_source,
        "checkpoint_s": checkpoint,
        "checkpoint_writes": {
            "trajectory": sum(
                is_log_spaced(s, trajectory.per_decade) for s in range(trajectory.min_step, nominal + 1)
            ),
            "last": nominal // int((raw.get("checkpoint") or {}).get("every_n_train_steps", 1000)),
        },
        "host_reads": dict(host.counter),
        "host_read_steps": host.stop - host.start,
        "nominal_steps": nominal,
        "val_interval": val_interval,
        "log_every": log_every,
        "network": module.hparams.network,
        "vocab_size": data.vocab_size,
        "item_len": data.item_len,
        "table": data.split_items("train"),
        "module_hparams": dict(module.hparams),
    }


# ----------------------------------------------------------------------------------------------------------
# Batch 512: attention kernels and the FLOP ceiling, round robin with the matmul measurement
# ----------------------------------------------------------------------------------------------------------
def measure_batch512(settings: Settings, grokkit: dict[str, Any], compile_too: bool) -> dict[str, Any]:
    table, vocab, item_len, hparams = (
        grokkit["table"],
        grokkit["vocab_size"],
        grokkit["item_len"],
        grokkit["module_hparams"],
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
            model = Decoder(vocab, item_len, attention=attention, **sizes)
            flops[shape] = train_flops_per_step(model, 512, item_len - 1)
            loop = PlainLoop(model, table, 512, hparams)
            for _ in range(settings.warmup_512):
                loop.step()
            arms[f"{shape}/{attention}"] = loop.step
        if compile_too:
            torch.manual_seed(0)
            model = Decoder(vocab, item_len, attention="manual", **sizes)
            loop = PlainLoop(model, table, 512, hparams)
            loop.model = torch.compile(model)
            start = time.perf_counter()
            for _ in range(3):
                loop.step()
            compile_s[shape] = time.perf_counter() - start
            arms[f"{shape}/compiled"] = loop.step
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(settings.windows):
        for name, step in arms.items():
            times[name].append(timed_window(step, settings.window_s))
    return {
        "step_s": times,
        "flops_per_step": flops,
        "matmul_flops": mm_flops,
        "matmul_n": settings.matmul_n,
        "compile_s": compile_s,
    }


# ----------------------------------------------------------------------------------------------------------
# Time to grok: the newest default run, or a fresh one
# ----------------------------------------------------------------------------------------------------------
def run_directory(raw: dict[str, Any]) -> Path:
    logger = (raw.get("trainer", {}) or {}).get("logger") or TRAINER_DEFAULTS["logger"]
    init = logger.get("init_args", {}) if isinstance(logger, dict) else {}
    return ROOT / init.get("save_dir", "runs") / init.get("name", "default")


def newest_summary(directory: Path) -> Path | None:
    versions = [p for p in directory.glob("version_*") if (p / "summary.json").exists()]
    versions.sort(key=lambda p: int(p.name.split("_")[-1]) if p.name.split("_")[-1].isdigit() else -1)
    return versions[-1] / "summary.json" if versions else None


def wall_clock_at(run: Path, steps: dict[str, int | None]) -> dict[str, float | None]:
    """Seconds from the run's first event to the validation logged at each step (TensorBoard wall times)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run), size_guidance={"scalars": 0})
        events.Reload()
        start = events.FirstEventTimestamp()
        logged = {e.step: e.wall_time for e in events.Scalars("val/train/acc")}
    except Exception:  # no event file or no such tag: the steps are still reported
        return dict.fromkeys(steps)
    # Lightning logs a validation after step s at TensorBoard step s - 1; the board keys it by s.
    at = {step: logged.get(step, logged.get(step - 1)) for step in steps.values() if step is not None}
    return {key: None if at.get(step) is None else at[step] - start for key, step in steps.items()}


def grok_result(raw: dict[str, Any], config: Path, run_now: bool) -> dict[str, Any]:
    directory = run_directory(raw)
    if run_now:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "grokkit", "fit", "--config", str(config)], cwd=ROOT, check=True
        )
        wall = time.perf_counter() - start
    summary_path = newest_summary(directory)
    if summary_path is None:
        return {
            "source": f"no {short_path(str(directory))}/version_*/summary.json yet (run `make fit` or --grok)"
        }
    summary = json.loads(summary_path.read_text())
    grokking = summary.get("grokking")
    source = short_path(str(summary_path)) + (" (run by this bench)" if run_now else " (newest existing run)")
    if not grokking:
        return {"source": f"{source}: no `grokking` section (no GrokkingOnset in that run)"}
    t_gen = grokking.get("t_gen", {}) or {}
    steps = {"t_mem": grokking.get("t_mem"), "end": summary.get("val", {}).get("step")}
    for split, short in (("test_inferred_iid", "iid"), ("test_inferred_ood", "ood")):
        for level in ("0.5", "0.9"):
            flat = grokking.get(f"t_gen/{split}/{level}")  # flat keys exist only once reached
            steps[f"t_gen_{short}_{level}"] = (t_gen.get(split) or {}).get(level, flat)
    result = {"source": source, "steps": steps, "wall_s": wall_clock_at(summary_path.parent, steps)}
    result["grokked"] = grokking.get("grokked")
    if run_now:
        result["run_wall_s"] = wall
    return result


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
def check(value: float, target: float, at_most: bool) -> bool:
    return value <= target if at_most else value >= target


def rows_from(g: dict[str, Any], b: dict[str, Any], grok: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    step_g, step_p = median(g["grokkit_s"]), median(g["plain_s"])
    # Each grokkit window against the plain window just before it: slow drifts in load cancel pairwise.
    ratio = median([a / b for a, b in zip(g["grokkit_s"], g["plain_s"], strict=False)])
    rows.append(
        Row(
            "grokkit step / plain loop step",
            ratio,
            f"{ratio:.3f}",
            "<= 1.05",
            check(ratio, 1.05, True),
            f"{step_g * 1e3:.1f} vs {step_p * 1e3:.1f} ms/step (batch {g['batch_size']}, {g['threads']} threads); "
            f"median of {len(g['grokkit_s'])} window pairs of {g['window_steps']} steps, interleaved",
        )
    )

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

    peak = b["matmul_flops"] / median(b["step_s"]["matmul"])
    for shape, target in (("4x128", 0.5), ("8x256", 0.75)):
        step = median(b["step_s"][f"{shape}/manual"])
        achieved = b["flops_per_step"][shape] / step
        rows.append(
            Row(
                f"training FLOP/s / matmul FLOP/s, {shape.replace('x', ' layers x ')}, batch 512",
                achieved / peak,
                f"{achieved / peak:.3f}",
                f">= {target}",
                check(achieved / peak, target, False),
                f"{achieved / 1e9:.0f} of {peak / 1e9:.0f} GFLOP/s ({b['flops_per_step'][shape] / 1e9:.1f} GFLOP/step, "
                f"{step * 1e3:.0f} ms/step, manual attention = grokkit's CPU default)",
            )
        )
    for shape in ("4x128", "8x256"):
        manual, sdpa = median(b["step_s"][f"{shape}/manual"]), median(b["step_s"][f"{shape}/sdpa"])
        rows.append(
            Row(
                f"attention sdpa / manual step time, {shape}, batch 512",
                sdpa / manual,
                f"{sdpa / manual:.3f}",
                "",
                None,
                f"sdpa {sdpa * 1e3:.0f} vs manual {manual * 1e3:.0f} ms/step: "
                + ("manual is faster" if manual < sdpa else "sdpa is faster"),
            )
        )
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

    reads = sum(g["host_reads"].values()) / max(1, g["host_read_steps"])
    sites = "; ".join(f"{site} x{count}" for site, count in Counter(g["host_reads"]).most_common(4))
    rows.append(
        Row(
            "host reads per training step (GPU syncs)",
            reads,
            f"{reads:.1f}",
            "",
            None,
            f"over {g['host_read_steps']} steps: {sites or 'none'}",
        )
    )
    rows.append(
        Row(
            "fp32 matmul FLOP/s (ceiling)",
            peak,
            f"{peak / 1e9:.0f} G",
            "",
            None,
            f"{b['matmul_n']}^2 x {b['matmul_n']}^2, {g['threads']} threads, median of {len(b['step_s']['matmul'])} windows",
        )
    )

    if "steps" in grok:
        s, w = grok["steps"], grok["wall_s"]

        def at(key: str) -> str:
            return (
                "-" if s[key] is None else f"{s[key]}" + (f" ({w[key] / 60:.1f} min)" if w.get(key) else "")
            )

        shown = f"t_mem {at('t_mem')}; t_gen iid 0.5: {at('t_gen_iid_0.5')}, 0.9: {at('t_gen_iid_0.9')}"
        rows.append(
            Row(
                "steps (wall) to grok, default config",
                s["t_gen_iid_0.9"],
                shown,
                "",
                None,
                f"t_gen ood 0.5: {at('t_gen_ood_0.5')}; run ended at {at('end')}; grokked: {grok['grokked']}; "
                f"from {grok['source']}",
            )
        )
    else:
        rows.append(
            Row("steps (wall) to grok, default config", None, "not measured", "", None, grok["source"])
        )
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
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
    }


def header_of(results: dict[str, Any]) -> str:
    info, load = results["machine"], results["load_average"]
    return (
        f"grokkit bench {results['date'][:16].replace('T', ' ')} - {info['cpu']}, {info['cores']} cores, "
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
    rows = rows_from(measured["grokkit"], measured["batch512"], measured["grok"])
    if as_markdown:
        print(f"{header_of(results)}\n\n{markdown(rows)}")
        return
    print_table(rows, header_of(results), console)
    if results["load_average"]["busy"]:  # other processes shared the cores: absolute times are inflated
        console.print(
            f"[yellow]bench: the machine was busy (load average {results['load_average']['start'][0]:.1f} "
            f"before the bench on {results['machine']['cores']} cores); ms/step and GFLOP/s are inflated, "
            "the interleaved ratios less so[/]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny windows: checks that the bench runs, numbers are noise"
    )
    parser.add_argument(
        "--grok", action="store_true", help="also train the default config to grokking (~10 min)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile at batch 512 (cold compile: ~1 min)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own choice)"
    )
    parser.add_argument("--out", type=Path, default=OUT / "results.json")
    parser.add_argument("--show", type=Path, help="only print the table of a saved results.json")
    parser.add_argument("--markdown", action="store_true", help="with --show: print it as Markdown")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 170)  # a wide table in logs and pipes
    if args.show:
        report(json.loads(args.show.read_text()), console, args.markdown)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)  # data/ and runs/ resolve as they do for `make fit`
    settings = QUICK if args.quick else FULL
    config, raw, config_source = load_config()
    started, load_before = datetime.datetime.now().astimezone(), os.getloadavg()
    console.print(
        f"bench: config {config_source}; {torch.get_num_threads()} threads; load average {load_before[0]:.2f}"
    )

    with tempfile.TemporaryDirectory(prefix="grokkit-bench-") as tmp:
        console.print("bench: grokkit vs plain loop, validation, probes ...")
        g = measure_grokkit(settings, config, raw, Path(tmp))
    console.print("bench: batch 512 (attention, FLOPs, matmul ceiling) ...")
    b = measure_batch512(settings, g, args.compile)
    grok = grok_result(raw, config, args.grok)
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
        # before the bench: afterwards the 1-minute average includes the bench's own ~2
        "load_average": {
            "start": load_before,
            "end": load_after,
            "busy": load_before[0] > 0.5 * os.cpu_count(),
        },
        "raw": {"grokkit": g, "batch512": b, "grok": grok},
    }
    results["rows"] = [row.__dict__ for row in rows_from(g, b, grok)]
    report(results, console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    console.print(f"bench: wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
