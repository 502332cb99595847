"""Bad input of every kind is refused in one line that names the field or file and the fix, with exit code 2,
no traceback, and nothing written: configs, fact files, dataset directories and checkpoints."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_cli import tiny_args as fit

from grokkit.cli import main
from grokkit.cli.configfiles import read_config_file
from grokkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RUN = Path("runs/tiny/version_0")
LAST = RUN / "checkpoints" / "last.ckpt"
TRAJECTORY = RUN / "checkpoints" / "trajectory" / "step=00000001.ckpt"


# ----- the workspace every case starts from: a dataset directory and a finished 2-step run -----
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("base")
    main(fit(base, "--trainer.max_steps=2", "--trajectory.min_step=1", "--trajectory.per_decade=1"))
    assert (base / LAST).is_file() and (base / TRAJECTORY).is_file()
    return base


def rerun(w: Path, *extra: str, command: str = "fit") -> list[str]:
    """``grokkit COMMAND --config RUN/config.yaml ...`` on the workspace's run."""
    return [
        command,
        "--config", str(w / RUN / "config.yaml"),
        f"--data.data_dir={w / 'data'}",
        f"--trainer.logger.init_args.save_dir={w / 'runs'}",
        *extra,
    ]  # fmt: skip


def facts(name: str, content: str | bytes) -> Callable[[Path], list[str]]:
    def prepare(w: Path) -> list[str]:
        path = w / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return fit(w, f"--data.facts_file={path}")

    return prepare


def dataset_dir(w: Path) -> Path:
    (directory,) = (w / "data").glob("kg-*")
    return directory


def edit_manifest(edit: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    def prepare(w: Path) -> list[str]:
        path = dataset_dir(w) / "manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))
        return fit(w)

    return prepare


def dataset_file(change: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def prepare(w: Path) -> list[str]:
        change(dataset_dir(w))
        return fit(w)

    return prepare


def corrupt(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(200)
        f.write(b"garbage")


ONSET_PROBE = "trainer:\n  callbacks:\n    - class_path: GrokkingOnset\n      init_args: {%s}\n"


def written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


class Foreign:
    """Pickled by reference: a weights-only load refuses it."""


def dangling_link(directory: Path, name: str) -> Path:
    """``directory`` holding ``name``, a symbolic link to nothing."""
    directory.mkdir()
    (directory / name).symlink_to(directory / "nothing")
    return directory


def pickled_object(path: Path) -> Path:
    torch.save({"state_dict": {}, "object": Foreign()}, path)
    return path


def config_file(text: str) -> Callable[[Path], list[str]]:
    def prepare(w: Path) -> list[str]:
        (w / "my.yaml").write_text(text)
        return ["fit", "--config", str(w / "my.yaml")]

    return prepare


def overlay(text: str) -> Callable[[Path], list[str]]:
    """The tiny config with a second config file stacked on it."""

    def prepare(w: Path) -> list[str]:
        (w / "over.yaml").write_text(text)
        return fit(w, "--config", str(w / "over.yaml"))

    return prepare


def new(*extra: str) -> Callable[[Path], list[str]]:
    return lambda w: fit(w, *extra)


TSV = "alice\tmother\tbeth\nbeth\tmother\tcarol\n"
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # ----- config values -----
    ("unknown key", new("--model.no_such_key=1"), "no_such_key"),
    ("unknown section", config_file("modle:\n  lr: 0.1\n"), "modle"),
    ("wrong type float", new("--data.phi=many"), 'Parser key "data.phi"'),
    (
        "wrong type int",
        new("--data.batch_size=1.5"),
        "Parser key \"data.batch_size\": Expected a <class 'int'>",
    ),
    ("zero entities", new("--data.n_entities=0"), "data.n_entities=0 must lie in [1, 1000000]"),
    ("negative batch", new("--data.batch_size=-4"), "data.batch_size=-4 must lie in [1, 1048576]"),
    ("zero eval size", new("--data.eval_size=0"), "data.eval_size=0 must lie in [1, 10000000]"),
    ("batch larger than data", new("--data.batch_size=100000"), "data.batch_size=100000 exceeds the"),
    (
        "CUDA graphs with gradient accumulation",
        new("--model.compile=reduce-overhead", "--trainer.accumulate_grad_batches=2"),
        "model.compile=reduce-overhead cannot accumulate gradients over 2 batches",
    ),
    (
        "out_degree > relations",
        new("--data.out_degree=50"),
        "data.out_degree=50 is larger than data.n_relations=10",
    ),
    ("phi beyond the inferred facts", new("--data.phi=500"), "data.phi=500.0 asks for"),
    (  # the data directory made to hold the dataset goes again
        "phi beyond the inferred facts, into a new data directory",
        lambda w: fit(w, "--data.phi=500", f"--data.data_dir={w / 'new' / 'data'}"),
        "data.phi=500.0 asks for",
    ),
    (  # jsonargparse reads a config file from its own directory, where a relative path to it is wrong
        "a wrong type in a config file given by a relative path",
        lambda w: fit(
            w, "--config", os.path.relpath(written(w / "over.yaml", "data:\n  n_entities: 40.5\n"))
        ),
        ["Parser key \"data.n_entities\": Expected a <class 'int'>", "over.yaml, line 2)"],
    ),
    (
        "a data error located in the config file that set it",
        overlay("data:\n  out_degree: 50\n"),
        [
            "data.out_degree=50 is larger than data.n_relations=10",
            "over.yaml, line 2; ",
            "tiny.yaml, line 17)",
        ],
    ),
    (
        "injection of no new facts",
        new("--data.injection.n_new=0"),
        "data.injection.n_new=0 must lie in [2, 1000000]",
    ),
    (
        "last.ckpt written outside the run",
        new("--checkpoint.dirpath=elsewhere"),
        "checkpoint.dirpath=elsewhere: a run keeps last.ckpt in RUN/checkpoints",
    ),
    (
        "best checkpoints with no metric to rank them",
        new("--checkpoint.save_top_k=5"),
        "checkpoint.save_top_k=5 keeps the best 5 checkpoints by checkpoint.monitor, which is null",
    ),
    (
        "progress bar updated at negative intervals",
        new(
            "--trainer.callbacks+=grokkit.cli.console.GrokProgressBar",
            "--trainer.callbacks.update_seconds=-1",
        ),
        "trainer.callbacks[0].init_args.update_seconds=-1.0 (GrokProgressBar) must lie in [0, 1000000]",
    ),
    ("negative phi", new("--data.phi=-1"), "data.phi=-1.0 must lie in [0, 10000]"),
    ("every fact OOD", new("--data.ood_fraction=1"), "data.ood_fraction=1.0 makes all"),
    ("no ID test", new("--data.test_iid_probability=0"), "test_inferred_iid, the ID test, would be empty"),
    ("ratio above 1", new("--data.hop1_ratio=1.5"), "data.hop1_ratio=1.5 must lie in [0, 1]"),
    (  # the natural data, trained and reported as the regime asked for
        "a data regime without its k",
        overlay("data:\n  hop2_ratio: 0.5\n"),
        ["data.hop2_ratio=0.5 with data.hop2_k=0 adds no compositions", "(set in ", "over.yaml, line 2)"],
    ),
    ("ratio below 0", new("--data.ood_fraction=-0.1"), "data.ood_fraction=-0.1 must lie in [0, 1]"),
    (
        "heads do not divide d_model",
        new("--model.network.init_args.n_heads=3"),
        "model.network.init_args: d_model (32) must be divisible by n_heads (3)",
    ),
    (
        "zero d_model",
        new("--model.network.init_args.d_model=0"),
        "model.network.init_args.d_model=0 must lie in [1, 65536]",
    ),
    (
        "layers not a multiple of shared ones",
        new("--model.network.init_args.n_layers=3", "--model.network.init_args.n_unique_layers=2"),
        "model.network.init_args: n_layers (3) must be a multiple of n_unique_layers (2)",
    ),
    ("unknown nonfinite mode", new("--model.nonfinite=maybe"), 'Parser key "model.nonfinite"'),
    ("unknown model class", new("--model.network.class_path=grokkit.models.NoSuchModel"), "NoSuchModel"),
    ("unknown plugin module", new("--trainer.callbacks+=plugins.nope.Nope"), "no module 'plugins.nope'"),
    (
        "trajectory every 0 steps",
        new("--trajectory.every_n_steps=0"),
        "trajectory.every_n_steps=0 must lie in [1, 1000000000000] (or null: log-spaced only)",
    ),
    (
        "validation every 0 steps",
        new("--trainer.val_check_interval=0"),
        "trainer.val_check_interval=0 must lie in (0, 1000000000000]",
    ),
    (
        "negative max_steps",
        new("--trainer.max_steps=-5"),
        "trainer.max_steps=-5 must lie in [-1, 1000000000000]",
    ),
    ("missing config file", lambda w: ["fit", "--config", str(w / "nope.yaml")], "nope.yaml does not exist"),
    (
        "malformed YAML",
        config_file("data: [1, 2\n"),
        "my.yaml, line 2, column 1: invalid YAML (expected ',' or ']'",
    ),
    ("empty config file", config_file("# nothing yet\n"), "my.yaml is empty (or only comments)"),
    (
        "a section given twice",
        config_file("model:\n  lr: 0.01\nmodel:\n  weight_decay: 0.5\n"),
        "my.yaml, line 3: key 'model' repeats line 1, and YAML would keep only the second; merge the two",
    ),
    ("config file holding a list", config_file("- 1\n- 2\n"), "my.yaml holds a list at the top"),
    (  # its keys commented out: a TypeError from deep inside jsonargparse
        "a section left empty in an overlay",
        overlay("model:\n  lr: 0.01\ndata:\n#  phi: 4.0\n"),
        "over.yaml, line 3: section 'data' is empty; a section is a mapping of its keys",
    ),
    ("config without a model", config_file("data:\n  phi: 3.0\n"), "the config lacks model.network"),
    (
        "network without a class",
        config_file("model:\n  network:\n    init_args: {d_model: 32}\n"),
        "model.network: no class_path given; name the class, e.g. class_path: grokkit.models.Decoder (set in",
    ),
    (
        "callback without a class",
        overlay("trainer:\n  callbacks:\n    - init_args: {sample_size: 3}\n"),
        "trainer.callbacks: no class_path given; name the class, e.g. class_path: grokkit.probes.LogitLens",
    ),
    (
        "a probe split that does not exist",
        overlay("trainer:\n  callbacks:\n    - class_path: CausalTracing\n      init_args: {split: test}\n"),
        "trainer.callbacks[0].init_args.split='test' (CausalTracing) must be one of train_inferred, "
        "test_inferred_iid, test_inferred_ood, new_old, old_new, new_new (set in",
    ),
    (
        "two probes of one class",
        overlay(
            "trainer:\n  callbacks:\n    - class_path: LogitLens\n    - class_path: LogitLens\n"
            "      init_args: {splits: [test_inferred_iid]}\n"
        ),
        "trainer.callbacks[1] is a second LogitLens: two would write over each other's results (logit_lens in "
        "summary.json, TensorBoard and checkpoints); keep one, and run another setting of it with `grokkit "
        "analyze RUN --probes-config` (it replaces the run's LogitLens) (set in",
    ),
    (  # found by Lightning at the first checkpoint after a validation: after training, and no last.ckpt
        "checkpoints ranked by a misspelt metric",
        new("--checkpoint.monitor=val/test_inferred_idd/acc", "--checkpoint.save_top_k=2"),
        "checkpoint.monitor='val/test_inferred_idd/acc' is not a metric a validation logs; name val/train/acc",
    ),
    (
        "a switch on a misspelt metric",
        overlay(
            "trainer:\n  callbacks:\n    - class_path: grokkit.train.schedule.SwitchHyperparameters\n"
            "      init_args: {monitor: val/train/accuracy, weight_decay: 1.0}\n"
        ),
        [
            "trainer.callbacks[0].init_args.monitor='val/train/accuracy' (SwitchHyperparameters) is not a",
            "over.yaml, line 4)",
        ],
    ),
    (
        "negative weight decay",
        new("--model.weight_decay=-0.1"),
        "model.weight_decay=-0.1 must lie in [0, 100]",
    ),
    (
        "EMA decay of 1",
        new("--model.ema_decay=1.0"),
        "model.ema_decay=1.0 must lie in [0, 1) (or null: no EMA)",
    ),
    (
        "beta out of range in a file",
        overlay("model:\n  betas: [0.9, 1.5]\n"),
        "model.betas[1]=1.5 must lie in [0, 1) (set in",
    ),
    (
        "NaN learning rate in a file",
        overlay("model:\n  lr: .nan\n"),
        "model.lr=nan must lie in (0, 10] (set in",
    ),
    (
        "probe sample size 0",
        new("--trainer.callbacks+=grokkit.probes.LogitLens", "--trainer.callbacks.sample_size=0"),
        "trainer.callbacks[0].init_args.sample_size=0 (LogitLens) must lie in [1, 10000000]",
    ),
    (  # training accuracy the minimum of no splits: NaN, so every run was classified as never memorized
        "a classifier of no training splits",
        new("--trainer.callbacks+=grokkit.probes.RunClassifier", "--trainer.callbacks.memorized_splits=[]"),
        "trainer.callbacks[0].init_args.memorized_splits=[] (RunClassifier) names no split; name at least one of "
        "id_atomic, ood_atomic,",
    ),
    (
        "log every 0 steps",
        new("--trainer.log_every_n_steps=0"),
        "trainer.log_every_n_steps=0 must lie in [1,",
    ),
    # ----- fact files -----
    (
        "missing facts file",
        lambda w: fit(w, f"--data.facts_file={w / 'nope.tsv'}"),
        "nope.tsv does not exist",
    ),
    (
        "facts file that is a directory",
        lambda w: fit(w, f"--data.facts_file={w / 'data'}"),
        "cannot be read (Is a directory); give a .jsonl or .tsv file",
    ),
    ("TSV line with two columns", facts("f.tsv", TSV + "carol\tmother\n"), "f.tsv:3: malformed fact"),
    ("empty name", facts("f.tsv", TSV + "carol\t\tdora\n"), "f.tsv:3: malformed fact"),
    (
        "JSONL extra key",
        facts("f.jsonl", '{"head": "a", "relation": "r", "tail": "b", "x": 1}\n'),
        "f.jsonl:1: malformed",
    ),
    ("JSONL missing key", facts("f.jsonl", '{"head": "a", "relation": "r"}\n'), "f.jsonl:1: malformed fact"),
    (
        "JSONL non-string name",
        facts("f.jsonl", '{"head": 1, "relation": "r", "tail": "b"}\n'),
        "f.jsonl:1: malformed",
    ),
    ("JSONL not JSON", facts("f.jsonl", "head relation tail\n"), "f.jsonl:1: malformed fact"),
    ("reserved token name", facts("f.tsv", TSV + "carol\tmother\t</a>\n"), "f.tsv:3: name '</a>' is one of"),
    (
        "two tails for one query",
        facts("f.tsv", TSV + "alice\tmother\tdora\n"),
        "fact 3 (alice, mother, dora) conflicts",
    ),
    ("no facts", facts("f.tsv", "\n\n"), "f.tsv holds no facts"),
    ("binary facts file", facts("f.tsv", b"\xff\xfe\x00binary"), "f.tsv is not UTF-8 text"),
    # ----- dataset directories -----
    ("manifest missing", dataset_file(lambda d: (d / "manifest.json").unlink()), "has no manifest.json"),
    ("manifest not JSON", dataset_file(lambda d: (d / "manifest.json").write_text("{")), "is not valid JSON"),
    (
        "manifest of other params",
        edit_manifest(lambda m: m["params"].update(phi=9.0)),
        "other parameters (phi)",
    ),
    ("manifest incomplete", edit_manifest(lambda m: m.pop("sha256")), "is incomplete or of another format"),
    ("tensors corrupt", dataset_file(lambda d: corrupt(d / "tensors.pt")), "does not match the hash"),
    ("tensors missing", dataset_file(lambda d: (d / "tensors.pt").unlink()), "tensors.pt is missing"),
    # ----- checkpoints -----
    (
        "checkpoint cut in half",
        lambda w: fit(w, f"--ckpt_path={cut_in_half(w / LAST, w / 'half.ckpt')}"),
        "half.ckpt cannot be read",
    ),
    (
        "last.ckpt cut in half",
        lambda w: rerun(w, "--ckpt_path=last") if cut_in_half(w / LAST, w / LAST) else [],
        "last.ckpt cannot be read",
    ),
    (
        "validate a checkpoint cut in half",
        lambda w: rerun(w, f"--ckpt_path={cut_in_half(w / LAST, w / 'half.ckpt')}", command="validate"),
        "half.ckpt cannot be read",
    ),
    ("checkpoint missing", lambda w: fit(w, f"--ckpt_path={w / 'nope.ckpt'}"), "nope.ckpt: no such file"),
    (
        "a finished run's config fitted again into its directory",
        lambda w: rerun(w),
        ("runs/tiny/version_0 already holds a run; add --ckpt_path last", "version=null"),
    ),
    (
        "a finished run's config fitted again from another checkpoint into its directory",
        lambda w: rerun(w, f"--ckpt_path={shutil.copy(w / LAST, w / 'other.ckpt')}"),
        ("runs/tiny/version_0 already holds a run; add --ckpt_path last", "version=null"),
    ),
    ("resume a new run", new("--ckpt_path=last"), "--ckpt_path last: no run to resume in "),
    ("Lightning's best checkpoint", new("--ckpt_path=best"), "--ckpt_path best: no such checkpoint is known"),
    (
        "resume a run whose last.ckpt was moved away",
        lambda w: (
            [] if (w / LAST).unlink() else rerun(w, "--ckpt_path=last", "--checkpoint.every_n_train_steps=1")
        ),
        "version_0 got to step 1 but holds no last.ckpt (moved or deleted?); put it back, or delete the directory",
    ),
    ("validate without a checkpoint", lambda w: rerun(w, command="validate"), "validate needs --ckpt_path"),
    (
        "checkpoint missing, the dataset not built yet",
        lambda w: fit(w, f"--ckpt_path={w / 'nope.ckpt'}", f"--data.data_dir={w / 'fresh'}"),
        "nope.ckpt: no such file",
    ),
    (
        "not a checkpoint",
        lambda w: rerun(w, f"--ckpt_path={w / RUN / 'config.yaml'}"),
        "config.yaml cannot be read",
    ),
    (
        "checkpoint of another shape",
        lambda w: fit(w, "--model.network.init_args.d_model=64", f"--ckpt_path={w / LAST}"),
        "holds a model of another shape (net.blocks.0.attn.proj.bias: [32] there, [64] here",
    ),
    (
        "checkpointing turned off",
        new("--trainer.enable_checkpointing=false"),
        "trainer.enable_checkpointing=false: every grokkit run keeps last.ckpt",
    ),
    (
        "a run bounded by nothing (an epoch never ends)",
        new("--trainer.max_steps=-1"),
        "trainer.max_steps=-1: grokkit draws training batches step by step and its epoch never ends, so the run",
    ),
    ("a run bounded in epochs", new("--trainer.max_epochs=3"), "trainer.max_epochs=3: grokkit draws"),
    ("a minimum in epochs", new("--trainer.min_epochs=1"), "so the run could stop only at trainer.max_steps"),
    (
        "validation once an epoch",
        new("--trainer.val_check_interval=null"),
        "trainer.val_check_interval=None: grokkit draws training batches step by step",
    ),
    (
        "validation every second epoch",
        new("--trainer.check_val_every_n_epoch=2"),
        "check_val_every_n_epoch=2: grokkit draws training batches step by step",
    ),
    (
        "resume with max_steps below the checkpoint's step",
        lambda w: rerun(w, "--ckpt_path=last", "--trainer.max_steps=1"),
        "trainer.max_steps=1: --ckpt_path",
    ),
    (
        "resume on another dataset",
        lambda w: rerun(w, "--ckpt_path=last", "--data.seed=1"),
        "was trained on another dataset (data.seed=0 there); resume with the run's data settings",
    ),
    (
        "resume with other weight-decay groups",
        lambda w: rerun(w, "--model.decay=all", "--ckpt_path=last"),
        "model.decay=all: --ckpt_path",
    ),
    (
        "checkpoint without EMA",
        lambda w: rerun(w, "--model.ema_decay=0.9", "--ckpt_path=last"),
        "ema.module.blocks.0.attn.proj.bias: missing there",
    ),
    (
        "checkpoint holding other objects",
        lambda w: fit(w, f"--ckpt_path={pickled_object(w / 'foreign.ckpt')}"),
        "foreign.ckpt holds Python objects that a weights-only load refuses; if you trust the file, add --weights_only false",
    ),
    (
        "weights-only checkpoint to resume",
        lambda w: rerun(w, f"--ckpt_path={w / TRAJECTORY}"),
        "holds weights only (a trajectory checkpoint?)",
    ),
    (
        "start from a checkpoint cut in half",
        lambda w: fit(w, f"--model.init_from={cut_in_half(w / LAST, w / 'half.ckpt')}"),
        ("error: model.init_from ", "half.ckpt cannot be read ("),
    ),
    (
        "causal tracing at a stage the model lacks",
        lambda w: fit(
            w, "--trainer.callbacks+=grokkit.probes.CausalTracing", "--trainer.callbacks.mid_stage=99"
        ),
        "causal_tracing.mid_stage=99 must be a patchable stage, 1..1 (this model has 3 stages)",
    ),
    # ----- the commands that read a finished run -----
    (
        "analyze a run whose last checkpoint is cut in half",
        lambda w: ["analyze", str(w / RUN)] if cut_in_half(w / LAST, w / LAST) else [],
        "last.ckpt cannot be read",
    ),
    (
        "export a checkpoint cut in half",
        lambda w: ["export", str(w / RUN), f"--ckpt={cut_in_half(w / LAST, w / 'half.ckpt')}"],
        ("error: --ckpt ", "half.ckpt cannot be read ("),
    ),
    (
        "export a run whose config.yaml is not a config",
        lambda w: ["export", str(w / RUN)] if (w / RUN / "config.yaml").write_text("[1, 2]") else [],
        "config.yaml holds a list at the top",
    ),
    (
        "export over a directory",
        lambda w: ["export", str(w / RUN), f"--out={w / 'data'}"],
        "data: is a directory; give a file name inside it",
    ),
    (  # the run's training state, replaced by a HookedTransformer file: no longer resumable
        "export over the run's last checkpoint",
        lambda w: ["export", str(w / RUN), f"--out={w / LAST}"],
        "last.ckpt: is a checkpoint or another file grokkit keeps for a run or sweep; writing over it",
    ),
    (
        "plot to a text file",
        lambda w: ["plot", str(w / RUN), f"--out={w / 'acc.txt'}"],
        "acc.txt: no figure format 'txt'; end the name in .png",
    ),
    (
        "plot a config file",
        lambda w: ["plot", str(w / RUN / "config.yaml")],
        "config.yaml: not a run directory; give a directory `grokkit fit` wrote",
    ),
    (
        "plot into a directory",
        lambda w: ["plot", str(w / RUN), f"--out={w / 'data'}"],
        "data: is a directory; give a file name inside it",
    ),
    (
        "compare below a file",
        lambda w: ["compare", str(w / RUN), f"--out={w / RUN / 'config.yaml' / 'c.png'}"],
        ("c.png: ", "config.yaml is a file; give a directory"),
    ),
    (
        "sweep into a file",
        lambda w: [
            "sweep",
            "--config",
            str(w / RUN / "config.yaml"),
            "--grid=data.phi=[3,4]",
            "--dry-run",
            f"--out={w / RUN / 'config.yaml'}",
        ],
        "config.yaml: a file is in the way; give a directory",
    ),  # fmt: skip
    (
        "one grid key in two --grid flags",
        lambda w: [
            "sweep",
            "--config",
            str(w / RUN / "config.yaml"),
            "--grid=data.phi,seed_everything=[3,4]",
            "--grid=data.phi=[5]",
            "--dry-run",
            f"--out={w / 'sweep'}",
        ],
        "--grid data.phi: data.phi is also in --grid data.phi,seed_everything; give each key one list",
    ),  # fmt: skip
    (
        "transfer into a file",
        lambda w: ["transfer", "--source", str(w / RUN), f"--out={w / RUN / 'config.yaml'}"],
        "config.yaml: a file is in the way",
    ),
    (
        "study into a file",
        lambda w: ["study", "--dry-run", f"--out={w / RUN / 'config.yaml'}"],
        "config.yaml: a file is in the way",
    ),
    (
        "compare a directory that is not a run",
        lambda w: ["compare", str(w / RUN), str(w / "data"), f"--out={w / 'c.png'}"],
        "data: not a run or sweep directory (no TensorBoard events)",
    ),
    (
        "analyze with a probes config holding no probes",
        lambda w: ["analyze", str(w / RUN), f"--probes-config={written(w / 'p.yaml', 'model: {lr: 0.1}')}"],
        "p.yaml lists no trainer.callbacks, the only section read from it",
    ),
    (
        "analyze with a probe value out of range in the probes config",
        lambda w: [
            "analyze",
            str(w / RUN),
            "--probes-config",
            str(written(w / "p.yaml", ONSET_PROBE % "stop_threshold: 2")),
        ],
        [
            "trainer.callbacks[0].init_args.stop_threshold=2.0 (GrokkingOnset) must lie in (0, 1]",
            "p.yaml, line 4)",
        ],
    ),
    (
        "analyze with a probe argument misspelt in the probes config",
        lambda w: [
            "analyze",
            str(w / RUN),
            f"--probes-config={written(w / 'p.yaml', ONSET_PROBE % 'stop_thresh: 0.5')}",
        ],
        ["GrokkingOnset': Option 'stop_thresh' is not accepted", "p.yaml, line 3)"],
    ),
    (
        "transfer on a split that does not exist",
        lambda w: ["transfer", "--source", str(w / RUN), "--split=nosplit", f"--out={w / 'transfer'}"],
        "--split nosplit: no such split; choose one of id_atomic,",
    ),
    (
        "transfer without its source run",
        lambda w: ["transfer", "--split=nosplit"],
        "the following arguments are required: --source (see `grokkit transfer --help`)",
    ),
    (  # checked before the dataset (a new data directory here) is built
        "run directory through a file",
        lambda w: fit(
            w,
            f"--trainer.logger.init_args.save_dir={written(w / 'afile', 'x')}",
            f"--data.data_dir={w / 'new'}",
        ),
        "cannot create the run directory",
    ),
    (
        "validate into a run directory through a file",
        lambda w: rerun(
            w,
            f"--ckpt_path={w / LAST}",
            f"--trainer.logger.init_args.save_dir={written(w / 'afile', 'x')}",
            command="validate",
        ),
        "cannot create the run directory",
    ),
    (
        "run directory through a link to nothing",
        lambda w: fit(w, f"--trainer.logger.init_args.save_dir={dangling_link(w / 'links', 'tiny')}"),
        "cannot create the run directory",
    ),
    (
        "analyze into the run's checkpoints",
        lambda w: ["analyze", str(w / RUN), "--name", "checkpoints"],
        "--name 'checkpoints': give the name of a new folder of the run",
    ),
    (
        "analyze into the run's parent",
        lambda w: ["analyze", str(w / RUN), "--name", ".."],
        "--name '..': give the name of a new folder of the run",
    ),
    (  # "" is the run directory itself: the finished analysis moved the run aside
        "analyze into the run directory itself",
        lambda w: ["analyze", str(w / RUN), "--name", ""],
        "--name '': give the name of a new folder of the run",
    ),
    (
        "analyze a directory that is not a run",
        lambda w: ["analyze", str(w / "data")],
        "config.yaml not found: give a run directory written by `grokkit fit`",
    ),
]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with its content hash."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "dir"
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    ("prepare", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_is_refused_in_one_line_and_writes_nothing(base, tmp_path, capsys, prepare, message):
    w = tmp_path / "w"
    shutil.copytree(base, w)
    args = prepare(w)
    before = snapshot(w)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("grokkit: error:")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1]
    assert all(part in errors[0] for part in ([message] if isinstance(message, str) else message)), errors[0]
    assert snapshot(w) == before  # nothing written, nothing overwritten


def test_the_table_is_broad():
    assert len(CASES) >= 25
    assert f"`tests/test_bad_input.py` holds {len(CASES)} such cases" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "setting",
    [["--data.n_relations=3"], ["--data", "{n_relations: 3}"], ["--config", "{data: {n_relations: 3}}"]],
)
def test_a_value_the_command_line_set_is_not_located_in_a_file(tmp_path, capsys, setting):
    """out_degree (5) against n_relations: the files set both, but the value at fault came from the command line."""
    with pytest.raises(SystemExit):
        main(fit(tmp_path, *setting))
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("grokkit: error: data.out_degree=5 is larger than data.n_relations=3")
    assert error.endswith("lower out_degree or raise n_relations"), error  # no "(set in ...)"


def test_a_number_and_a_string_of_the_same_text_are_two_keys(tmp_path):
    """YAML keeps both ``1:`` and ``'1':``; only a key given twice as the same type is refused."""
    both = written(tmp_path / "both.yaml", "model:\n  lr: 0.1\nextra:\n  1: a\n  '1': b\n")
    assert read_config_file(both)["extra"] == {1: "a", "1": "b"}
    twice = written(tmp_path / "twice.yaml", "extra:\n  '1': a\n  '1': b\n")
    with pytest.raises(ConfigError, match="line 3: key '1' repeats line 2"):
        read_config_file(twice)


def test_debug_shows_the_exception(base, tmp_path):
    with pytest.raises(ConfigError, match="data.n_entities=0"):
        main(fit(tmp_path, "--data.n_entities=0", "--debug"))


@pytest.mark.slow
def test_a_truncated_checkpoint_through_the_console_entry_point(base, tmp_path):
    half = cut_in_half(base / LAST, tmp_path / "half.ckpt")
    command = [sys.executable, "-m", "grokkit", *fit(base, f"--ckpt_path={half}")]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"grokkit: error: --ckpt_path {half} cannot be read")
    )
    assert "Traceback" not in result.stderr
    debug = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "GROKKIT_DEBUG": "1"},
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
