"""The paper-scale benchmark runs end to end on the CPU at tiny sizes: every arm trains for real through the
Trainer, validates with the config's probes, and lands in the table and the JSON."""

import copy
import json
import math
import statistics
import subprocess
import sys

import lightning as L
import pytest
import torch
import yaml
from test_cli import ROOT, tiny_args

from grokkit.models import Decoder

pytestmark = pytest.mark.slow


def test_paper_scale_bench_times_every_arm_and_projects_the_paper_runs(tmp_path):
    out = tmp_path / "paper_scale.json"
    command = [sys.executable, "bench/paper_scale.py", "--modes", "eager", "--warmup", "1", "--steps", "2"]
    command += ["--data-dir", str(tmp_path / "data"), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["tiny"] and results["matmul_flops"] > 0
    arms = {arm["arm"]: arm for arm in results["arms"]}
    assert list(arms) == [
        "recursive (He et al.), eager",
        "decoder 8 x 768 (Wang et al.), eager",
        "recursive (He et al.), eager, no prefix slots",
    ]
    for arm in arms.values():
        assert arm["precision"] == "bf16-mixed"  # the configs' GPU precision, autocast on the CPU here
        assert arm["step_s"] > 0 and arm["flops_per_step"] > 0 and arm["validation_s"] > 0
        assert arm["paper_steps"] >= 1_500_000 and arm["paper_validations"] > 0
        assert arm["plain_step_s"] > 0  # the same update in a plain loop, for the step / plain loop column
    recursive = arms["recursive (He et al.), eager"]
    assert set(recursive["probe_s"]) == {"logit_lens", "circuit_detector", "grokking", "classification"}
    assert all(seconds is not None for seconds in recursive["probe_s"].values())
    # The 16 prefix slots make 21 positions of 5: 4.2x the block FLOPs (the unembedding reads only the 5).
    without = arms["recursive (He et al.), eager, no prefix slots"]
    assert 3.5 < recursive["flops_per_step"] / without["flops_per_step"] < 21 / 5
    shown = subprocess.run(
        [sys.executable, "bench/paper_scale.py", "--show", str(out), "--markdown"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert (
        "TINY sizes" in shown and shown.count("| recursive (He et al.)") == 2 and "step / plain loop" in shown
    )


def test_a_failing_paper_scale_arm_is_recorded_and_the_others_still_run(tmp_path):
    """Every arm fails here (its data directory cannot be made): each leaves its error in the JSON and the
    table, and the run goes on to the next, as a GPU run whose compile fails keeps its eager rows."""
    out, blocked = tmp_path / "paper_scale.json", tmp_path / "a_file"
    blocked.write_text("")
    command = [sys.executable, "bench/paper_scale.py", "--modes", "eager", "--warmup", "1", "--steps", "2"]
    done = subprocess.run(
        [*command, "--data-dir", str(blocked / "data"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    arms = json.loads(out.read_text())["arms"]
    assert len(arms) == 3 and all(arm["error"].startswith("ConfigError: data.data_dir") for arm in arms)
    assert done.stdout.count("failed: ConfigError") >= 3


def test_step_profile_splits_the_step_into_groups_that_add_up_and_times_gelu_alone(tmp_path):
    out = tmp_path / "step_profile.json"
    command = [sys.executable, "bench/step_profile.py", "--tiny", "--data-dir", str(tmp_path / "data")]
    done = subprocess.run([*command, "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(out.read_text())["shapes"]
    groups = result["groups_s"]
    assert groups["GEMMs (mm, addmm)"] > 0 and groups["bias copies into addmm's output"] > 0
    assert groups["GELU"] > 0 and groups["attention bmm"] > 0
    ops = sum(seconds for name, seconds in groups.items() if not name.startswith("outside"))
    assert 0 < ops <= result["profiled_step_s"] * 1.01  # no op's time counted twice
    assert groups["outside any op (Python, the profiler's bookkeeping)"] > 0
    gelu = result["gelu"]
    assert gelu["shape"] == [32, 4, 64] and gelu["in_step_s"] > 0 and gelu["alone_s"] > 0
    assert result["saved_for_backward_bytes"] >= 32 * 4 * 64 * 4  # at least one block's GELU input, in fp32
    shown = subprocess.run(
        [sys.executable, "bench/step_profile.py", "--show", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert "| GEMMs (mm, addmm) |" in shown and "GELU forward on 32 x 4 x 64" in shown
    assert "- Kept for the backward: " in shown


def test_time_to_grok_trains_the_default_with_an_accelerator_and_compares_it(tmp_path, monkeypatch):
    """``bench.py --grok-accelerators``' arm: a real (tiny) fit with Grokfast, read back from its summary and
    TensorBoard events, and its row against the default's."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from report import grok_row
    from time_to_grok import grok_result

    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    raw["trainer"]["callbacks"] = ["grokkit.probes.GrokkingOnset", "grokkit.probes.RunClassifier"]
    raw["data"]["data_dir"] = str(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))

    assert "yet (run --grok-accelerators)" in grok_result(raw, config, False, "grokfast")["source"]
    result = grok_result(raw, config, True, "grokfast")
    run = tmp_path / "runs" / "tiny-grokfast" / "version_0"
    assert "grokkit.train.grokfast.Grokfast" in (run / "config.yaml").read_text()
    assert result["steps"]["end"] == 60 and result["steps"]["t_gen_iid_0.9"] is None  # 60 steps: no grokking
    assert 0 < result["wall_s"]["end"] < result["run_wall_s"] and result["label"]
    assert result["command"].startswith(f"grokkit fit --config {config} --trainer.callbacks+=")

    baseline = {"steps": {"t_gen_iid_0.9": 40}, "wall_s": {"t_gen_iid_0.9": 2 * result["wall_s"]["end"]}}
    row = grok_row("with Grokfast", result, baseline)
    assert row.value is None and row.shown.endswith("0.9: -")
    assert ">1.50x the default's steps to ID test 0.9, >0.50x its wall time" in row.detail


def test_median_interval_takes_the_widest_order_statistics_that_keep_95_percent(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from common import median_interval

    # n = 9: the 2nd and 8th values cover 1 - 2 (1 + 9) / 512 = 0.961; the 3rd and 7th only 0.820.
    assert median_interval([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0]) == (2.0, 8.0)
    assert median_interval([5.0, 1.0, 3.0, 2.0, 4.0, 6.0]) == (1.0, 6.0)  # the extremes: 0.969
    assert all(math.isnan(bound) for bound in median_interval([1.0, 2.0, 3.0, 4.0, 5.0]))  # 0.938 at best


def test_the_flop_count_takes_the_unembedding_only_where_a_step_computes_logits(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from plain_loop import train_flops_per_step, unembedded_positions

    model = Decoder(30, 5, d_model=32, n_heads=4, n_layers=2)
    items = torch.tensor([[2, 20, 21, 5, 1], [4, 20, 6, 1, 0]])  # a two-hop and an atomic item
    assert unembedded_positions(model, items, every_position=True) == 4
    assert unembedded_positions(model, items, every_position=False) == 2  # t and </a>
    every, loss_only = (train_flops_per_step(model, 8, 4, unembedded) for unembedded in (4, 2))
    assert every - loss_only == 6 * model.wte.weight.numel() * 8 * 2


def test_busy_cores_sees_a_process_that_spins_on_one_core(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from common import busy_cores

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert busy_cores(0.5) >= 0.7  # the spinner's core, whatever else runs beside it
    finally:
        spinner.kill()
        spinner.wait()


def test_with_the_accelerator_schedule_the_host_reads_only_on_the_logging_step(tmp_path, monkeypatch):
    """The bench's GPU-sync forecast: real tiny fits over one logging interval (the progress bar updated at every
    step), the non-finite check read only there on an accelerator's schedule, at every step on a CPU's, and
    nothing else asking the host for a value between logging steps."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from grokkit_arm import count_host_reads
    from report import host_read_rows

    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["data"]["data_dir"] = str(tmp_path / "data")
    raw["trainer"].update(log_every_n_steps=20, val_check_interval=100)  # no validation inside
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    counted = count_host_reads(config, tmp_path, threads=1, log_every=20)
    sites = counted["accelerator"]["host_reads"]
    assert counted["accelerator"]["host_read_steps"] == 20 and sum(sites.values()) <= 5, (
        sites
    )  # the logging step's
    assert sum(n for site, n in sites.items() if "raise_if_bad" in site) == 1, sites  # once, not every step
    assert sum(n for site, n in sites.items() if "console.py" in site) == 1, sites  # the bar: once per log
    cpu = counted["cpu"]["host_reads"]
    assert sum(n for site, n in cpu.items() if "raise_if_bad" in site) == 20, cpu  # every step, free on a CPU
    assert sum(cpu.values()) - sum(sites.values()) == 19, (cpu, sites)  # and nothing else differs
    rows = host_read_rows(counted)
    assert [row.value for row in rows] == [sum(cpu.values()) / 20, sum(sites.values()) / 20]
    assert "every 20 steps as on a GPU" in rows[1].name


def test_lightning_default_interleaves_a_bare_trainer_with_the_plain_loop(tmp_path, monkeypatch):
    """Lightning's default Trainer beside the step ratio: a minimal LightningModule on a bare Trainer (a real
    tiny fit), timed window by window against the plain loop, and its row."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from bare_lightning import measure_lightning_default
    from common import QUICK
    from report import lightning_default_row

    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["data"]["data_dir"] = str(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    bare = measure_lightning_default(QUICK, config, tmp_path, 1, QUICK.window_steps, [])
    assert len(bare["grokkit_s"]) == len(bare["plain_s"]) == QUICK.windows
    assert all(seconds > 0 for seconds in bare["grokkit_s"] + bare["plain_s"])
    row = lightning_default_row(bare, batch_size=raw["data"]["batch_size"])
    ratios = [a / b for a, b in zip(bare["grokkit_s"], bare["plain_s"], strict=True)]
    assert (
        row.value == pytest.approx(statistics.median(ratios)) and row.passed is None
    )  # no target of its own
    assert f"median of {QUICK.windows} window pairs" in row.detail


@pytest.mark.parametrize("clip_algorithm", ["norm", "value"])
def test_the_plain_loop_makes_grokkits_update(tmp_path, monkeypatch, clip_algorithm):
    """The loop a step is compared with computes what grokkit's step computes, bf16 autocast, label smoothing,
    clipping and EMA included: from the same weights and batch, the same weights and EMA, bit for bit."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from plain_loop import PlainLoop

    from grokkit.cli import build_cli

    args = tiny_args(tmp_path, "--trainer.max_steps=1", "--trainer.precision=bf16-mixed")
    args += ["--trainer.gradient_clip_val=0.01", f"--trainer.gradient_clip_algorithm={clip_algorithm}"]
    args += ["--model.warmup_steps=0", "--model.ema_decay=0.9", "--model.label_smoothing=0.1"]
    cli = build_cli(args[1:], run=False, save_config=False)
    module, trainer = cli.model, cli.trainer
    seen = []

    class Batch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch.clone())

    trainer.callbacks.append(Batch())
    net, before = copy.deepcopy(module.net), copy.deepcopy(module.net.state_dict())
    trainer.fit(module, datamodule=cli.datamodule)
    loop = PlainLoop.like(trainer, dict(module.hparams), net, seen[0], 1)  # its precision and clipping
    loop.train_on(seen[0])
    assert loop.ema is not None and module.ema is not None
    for trained, mine in ((module.net, loop.model), (module.ema.module, loop.ema.module)):
        pairs = zip(trained.state_dict().values(), mine.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(before["wte.weight"], net.wte.weight)  # the step changed the weights


def test_paper_scale_arms_run_eager_first_and_cuda_graphs_for_the_decoder_only(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from paper_scale import arms

    names = [arm.name for arm in arms(["reduce-overhead", "compile", "eager"])]
    assert names == [
        "recursive (He et al.), eager",
        "decoder 8 x 768 (Wang et al.), eager",
        "recursive (He et al.), eager, no prefix slots",
        "recursive (He et al.), compile",
        "decoder 8 x 768 (Wang et al.), compile",
        "decoder 8 x 768 (Wang et al.), reduce-overhead",
    ]
    assert [arm.name for arm in arms(["reduce-overhead"])] == [
        "decoder 8 x 768 (Wang et al.), reduce-overhead"
    ]
    assert arms(["compile"])[2].name == "recursive (He et al.), compile, no prefix slots"


def test_mfu_divides_by_the_peak_of_the_card_the_device_names(monkeypatch):
    """The NVL parts (lower clocks) before the SXM names they contain; no bf16 peak for cards without bf16
    tensor cores, whose MFU then shows "-"."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from paper_scale import bf16_peak

    assert bf16_peak("NVIDIA H100 80GB HBM3") == bf16_peak("NVIDIA H200") == pytest.approx(989.4e12)
    assert bf16_peak("NVIDIA H100 NVL") == bf16_peak("NVIDIA H200 NVL") == pytest.approx(835.5e12)
    assert bf16_peak("NVIDIA H100 PCIe") == pytest.approx(756e12)
    assert bf16_peak("Tesla V100-SXM2-16GB") is None and bf16_peak("Tesla T4") is None


def test_make_bench_measures_the_step_ratio_validation_probes_and_flop_rows(tmp_path, monkeypatch):
    """``make bench``'s core at its ``--quick`` settings on the tiny config: grokkit's real fit interleaved
    with the plain loop, validations and the default probes timed, checkpoints written, the batch-512 rows
    trained, and every row with a target computed from them."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from batch512 import measure_batch512
    from common import QUICK
    from grokkit_arm import measure_grokkit
    from report import rows_from
    from time_to_grok import grok_result

    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["data"]["data_dir"] = str(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    g = measure_grokkit(QUICK, config, raw, tmp_path, 1)
    assert len(g["grokkit_s"]) == len(g["plain_s"]) == QUICK.windows
    assert g["probes_source"] == "defaults of every probe class" and all(g["probe_s"].values())
    assert all(len(times) == QUICK.validations for times in g["checkpoint_s"].values())
    rows = {
        row.name: row
        for row in rows_from(g, measure_batch512(QUICK, g, False), grok_result(raw, config, False))
    }
    targeted = [row for row in rows.values() if row.target]
    assert {row.name for row in targeted} >= {
        "grokkit step / plain loop step",
        "training with default probes / without",
        "validation pass / training between validations",
        "training FLOP/s / matmul FLOP/s, 4 layers x 128, batch 512",
        "training FLOP/s / matmul FLOP/s, 8 layers x 256, batch 512",
    }
    assert all(math.isfinite(row.value) and row.value > 0 for row in targeted if row.value is not None)
    # A part that raised (bench.attempt records its error) leaves a "failed" row with the error, and the rest.
    failed = {"error": "RuntimeError: out of memory"}
    g["lightning"] = failed
    rows = rows_from(
        g, failed, failed, failed, failed, {"grokfast": failed}, {**failed, "lightning": failed}, failed
    )
    assert len(rows) > 10 and rows[0].value is not None  # the step ratio stands
    lost = [row for row in rows if row.shown == "failed"]
    assert all(row.detail == failed["error"] and row.passed is None for row in lost)
    assert {row.name for row in lost} >= {
        "training FLOP/s / matmul FLOP/s, 4 layers x 128, batch 512",
        "grokkit / original-style trainer, samples/s, 4 x 128, batch 512, paper-scale graph",
        "steps (wall) to grok, default config + grokfast",
        "grokkit's own cost per step (Trainer - plain loop, 2 layers x 8 wide, batch 8)",
        "Lightning's default Trainer, for comparison (a minimal LightningModule on a bare Trainer - plain loop)",
    }
