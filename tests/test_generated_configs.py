"""Generated bad input: mutations of every shipped config are refused in one line, or accepted and runnable.

Each shipped config (with the overlays it is meant to stack with) is parsed once by grokkit's parser; the
parsed config holds every constructor argument of every configured class with its value, and the classes'
signatures give the type of those left ``null``. From them come the mutations: drop a key (one the files
set), a value of the wrong type, zero, negative, NaN, huge, an empty list, an unknown key. hypothesis draws
300 of them (``GROKKIT_MUTATIONS=N`` for more) and writes each as one config file, the files' content with
the mutation, in an empty directory. It runs through ``grokkit fit``'s own steps, in-process and with one
parser: ``parse_arguments`` (which checks the ranges), ``before_instantiate_classes`` and
``instantiate_classes``, inside ``errors_in_one_line`` as in ``main``. A new CLI per case would spend
0.3-0.6 s building the same parser again (300 cases: minutes); the paper configs' models are built on the
meta device (shapes without memory) for the same reason. Every case must end in one of two ways, and write
nothing:

* refused: a non-zero exit, exactly one ``grokkit: error:`` line, last, and no traceback;
* accepted: model, data module and trainer all built.

NaN and huge values must always be refused. That accepted mutations really train is checked on two of
tiny.yaml's (two steps and a validation each): a training run per case would take minutes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from test_bad_input import snapshot
from test_ranges import is_number_type

import grokkit.cli.invocation
from grokkit.cli import CLI_KWARGS, GrokkitCLI, errors_in_one_line, main
from grokkit.data import TwoHopDataModule
from grokkit.ranges import import_class
from grokkit.train.module import GrokModule

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
STACKS = [
    ["tiny.yaml"],
    ["default.yaml"],
    ["default.yaml", "cpu_regimes.yaml"],
    ["default.yaml", "cpu_regimes.yaml", "he2026/second_hop_full.yaml"],
    ["he2026/natural.yaml"],
    *(["he2026/natural.yaml", f"he2026/{name}.yaml"] for name in ("both_hop_full", "both_hop_half")),
    *(["he2026/natural.yaml", f"he2026/{name}.yaml"] for name in ("first_hop_full", "second_hop_full")),
    ["he2026/natural.yaml", "he2026/gpt2_baseline.yaml"],
    ["wang2024/composition.yaml"],
    *(
        ["wang2024/composition.yaml", f"wang2024/phi{phi}.yaml"]
        for phi in ("3.6", "5.4", "7.2", "9.0", "12.6", "18.0")
    ),
    ["wang2024/composition.yaml", "wang2024/shared.yaml"],
    *(
        ["default.yaml", f"demo/{name}.yaml"]
        for name in ("anneal_after_grokking", "grokfast", "lr_half_at_switch", "one_switch", "spike_free")
    ),
    ["study/base_cpu.yaml"],
    *(
        ["study/base_cpu.yaml", f"study/{name}.yaml"]
        for name in ("natural", "both_hop_full", "both_hop_half", "first_hop_full", "second_hop_full")
    ),
    ["study/base_cpu.yaml", "study/second_hop_full.yaml", "study/lead_cpu.yaml"],
]
SECTIONS = {"model": GrokModule, "data": TwoHopDataModule, "trainer": "lightning.pytorch.Trainer"}
SECTIONS |= {"checkpoint": "grokkit.train.checkpointing.ResumableCheckpoint"}
SECTIONS |= {"trajectory": "grokkit.train.checkpointing.TrajectoryCheckpoint"}
HUGE_INT, HUGE_FLOAT = 10**15, 1e300
CASES = int(os.environ.get("GROKKIT_MUTATIONS", "300"))


class Built(Exception):
    """Raised once every class is instantiated: the CLI stops before running the subcommand."""


class StopBeforeRunning(GrokkitCLI):
    def after_instantiate_classes(self) -> None:
        raise Built(self)


@pytest.fixture(scope="module")
def cli() -> GrokkitCLI:
    with pytest.raises(Built) as built, torch.device("meta"):
        StopBeforeRunning(
            GrokModule, TwoHopDataModule, **CLI_KWARGS, args=["fit", "--config", str(CONFIGS / "tiny.yaml")]
        )
    return built.value.args[0]


@dataclass(frozen=True)
class Mutation:
    stack: tuple[str, ...]
    path: tuple[str | int, ...]  # keys and list indexes into the parsed config
    kind: str
    value: Any = None

    def __str__(self) -> str:
        key = ".".join(str(part) for part in self.path)
        return f"{'+'.join(self.stack)}: {self.kind} {key}" + (
            f" = {self.value!r}" if self.kind != "drop" else ""
        )

    def apply(self, files: dict, parsed: dict) -> dict:
        """The config files' content with the mutation; a part they leave to the defaults is copied from
        ``parsed`` first (a small config parses 3 times faster than the parsed one with every default)."""
        mutated, source = copy.deepcopy(files), parsed
        *parents, last = self.path
        target = mutated
        for part in parents:
            source = source[part]
            if isinstance(target, dict) and part not in target:
                target[part] = copy.deepcopy(source)
            target = target[part]
        if self.kind == "drop":
            del target[last]
        elif self.kind == "unknown key":
            if isinstance(target, dict) and last not in target:
                target[last] = copy.deepcopy(source[last])
            target[last]["no_such_key"] = 1
        else:
            target[last] = self.value
        return mutated


def parse(cli: GrokkitCLI, args: list[str]) -> None:
    """``grokkit fit ARGS`` up to the built classes, exactly as :class:`LightningCLI` runs it."""
    grokkit.cli.invocation.argv = args  # what main() records for the file and line in error messages
    cli.parse_arguments(cli.parser, args)
    cli.subcommand = cli.config["subcommand"]
    cli.before_instantiate_classes()
    cli.instantiate_classes()


def parsed_config(cli: GrokkitCLI, stack: list[str]) -> dict:
    args = ["fit", *(arg for name in stack for arg in ("--config", str(CONFIGS / name)))]
    grokkit.cli.invocation.argv = args
    cli.parse_arguments(cli.parser, args)
    config = cli.config["fit"].as_dict()
    for key in ("config", "ckpt_path", "weights_only"):  # the command line's own arguments
        config.pop(key)
    return config


def owner(config: dict, path: tuple) -> type | None:
    """The class whose constructor takes the key at ``path``."""
    section = SECTIONS.get(path[0])
    found: Any = import_class(section) if isinstance(section, str) else section
    node: Any = config
    for part in path[:-1]:
        node = node[part]
        if isinstance(node, dict) and isinstance(node.get("class_path"), str):
            found = import_class(node["class_path"])
    return found


def is_numeric(cls: type | None, name: str) -> bool:
    """Whether the constructor argument ``name`` of ``cls`` (or a base class) is typed int or float."""
    for base in cls.__mro__ if cls else ():
        try:
            hint = typing.get_type_hints(base.__init__).get(name)
        except Exception:  # noqa: BLE001 - a signature whose annotations do not resolve
            continue
        if hint is not None:
            return is_number_type(hint)
    return False


def mutations(files: dict, config: dict, stack: tuple[str, ...]) -> list[Mutation]:
    """Every mutation of every key of the parsed ``config``; keys are dropped only where ``files`` set them."""
    found: list[Mutation] = []

    def in_files(path: tuple) -> bool:
        node: Any = files
        for part in path:
            if not (isinstance(node, dict) and part in node or isinstance(node, list) and part < len(node)):
                return False
            node = node[part]
        return True

    def visit(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            if path and path[-1] != "class_path":
                found.append(Mutation(stack, path, "unknown key"))
            for key, value in node.items():
                visit(value, (*path, key))
            return
        if path and isinstance(path[-1], str) and in_files(path):
            found.append(Mutation(stack, path, "drop"))
        found.append(Mutation(stack, path, "empty list", []))
        if isinstance(node, list):
            for index, item in enumerate(node):
                visit(item, (*path, index))
            return
        numeric = (isinstance(node, (int, float)) and not isinstance(node, bool)) or (
            node is None and is_numeric(owner(config, path), str(path[-1]))
        )
        wrong = {bool: "maybe", str: 12345}.get(type(node), "not a number")
        found.append(Mutation(stack, path, "wrong type", wrong))
        if numeric:
            huge = HUGE_FLOAT if isinstance(node, float) else HUGE_INT
            negative = -abs(node) if isinstance(node, (int, float)) and node else -1
            for kind, value in (("zero", 0), ("negative", negative), ("NaN", math.nan), ("huge", huge)):
                found.append(Mutation(stack, path, kind, value))

    visit(config, ())
    return found


def merged_files(stack: list[str]) -> dict:
    """The stacked config files as one (mappings merged, lists replaced, as the parser stacks them)."""

    def merge(into: dict, top: dict) -> dict:
        for key, value in top.items():
            both = isinstance(value, dict) and isinstance(into.get(key), dict)
            into[key] = merge(into[key], value) if both else value
        return into

    merged: dict = {}
    for name in stack:
        merge(merged, yaml.safe_load((CONFIGS / name).read_text()))
    return merged


@pytest.fixture(scope="module")
def bases(cli) -> dict[tuple[str, ...], tuple[dict, dict]]:
    """Per stack: the files' content and the parsed config."""
    return {tuple(stack): (merged_files(stack), parsed_config(cli, stack)) for stack in STACKS}


@pytest.fixture(scope="module")
def all_mutations(bases) -> list[Mutation]:
    return [m for stack, (files, parsed) in bases.items() for m in mutations(files, parsed, stack)]


def outcome(
    cli: GrokkitCLI, mutation: Mutation, base: tuple[dict, dict], workdir: Path, *extra: str
) -> tuple[str, str]:
    """``("accepted" | "refused", stderr)`` of the mutated config, run in ``workdir``; checks the one line."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(mutation.apply(*base)))
    before, stderr, previous = snapshot(workdir), io.StringIO(), os.getcwd()
    os.chdir(workdir)  # data_dir and save_dir are relative: anything written would land here
    try:
        with contextlib.redirect_stderr(stderr), torch.device("meta"), errors_in_one_line():
            parse(cli, ["fit", "--config", "config.yaml", *extra])
        result = "accepted"
    except Built:
        result = "accepted"
    except SystemExit as exit_info:
        assert exit_info.code not in (0, None), mutation
        result = "refused"
    finally:
        os.chdir(previous)
    text = stderr.getvalue()
    assert "Traceback" not in text, (str(mutation), text)
    if result == "refused":
        lines = text.strip().splitlines()
        assert [line for line in lines if line.startswith("grokkit: error:")] == lines[-1:], (
            str(mutation),
            text,
        )
    assert snapshot(workdir) == before, mutation  # nothing written
    return result, text


def test_every_shipped_config_is_mutated(all_mutations):
    shipped = {str(path.relative_to(CONFIGS)) for path in CONFIGS.rglob("*.yaml")}
    shipped -= {str(path.relative_to(CONFIGS)) for path in CONFIGS.glob("sweeps/*.yaml")}  # grokkit sweep's
    # grokkit transfer's overlays, stacked on a finished run's config.yaml (tests/test_transfer.py)
    shipped -= {str(path.relative_to(CONFIGS)) for path in CONFIGS.glob("transfer/*.yaml")}
    # grokkit analyze's probes configs: callbacks only, added to a finished run's config
    shipped -= {str(path.relative_to(CONFIGS)) for path in CONFIGS.glob("probes/*.yaml")}
    assert shipped == {name for stack in STACKS for name in stack}
    kinds = {m.kind for m in all_mutations}
    assert kinds == {"drop", "wrong type", "zero", "negative", "NaN", "huge", "empty list", "unknown key"}
    assert len(all_mutations) > 10000
    readme = (ROOT / "README.md").read_text()  # the README's description of this test says how many
    assert f"({len(STACKS)} stacks)" in readme and f"derives {len(all_mutations):,} mutations" in readme


@settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_mutated_config_is_refused_in_one_line_or_accepted(
    cli, bases, all_mutations, tmp_path_factory, data
):
    mutation = all_mutations[data.draw(st.integers(0, len(all_mutations) - 1), label="mutation")]
    result, _ = outcome(cli, mutation, bases[mutation.stack], tmp_path_factory.mktemp("case"))
    event(result)
    if mutation.kind in ("NaN", "huge"):
        assert result == "refused", f"{mutation} was accepted"


@settings(
    max_examples=2,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
def test_accepted_mutations_train(cli, bases, all_mutations, tmp_path_factory, data):
    """A few accepted mutations of tiny.yaml really train (2 steps and a validation), or stop in one line."""
    tiny = [m for m in all_mutations if m.stack == ("tiny.yaml",)]
    mutation = data.draw(st.sampled_from(tiny), label="mutation")
    workdir = tmp_path_factory.mktemp("train")
    base = bases[("tiny.yaml",)]
    steps = ["--trainer.max_steps=2", "--trainer.val_check_interval=2"]
    assume(outcome(cli, mutation, base, workdir, *steps)[0] == "accepted")
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        main(["fit", "--config", "config.yaml", *steps])
    except SystemExit as exit_info:  # a run that had to stop: one line, checked by the bad-input tests
        assert exit_info.code == 1, mutation
    finally:
        os.chdir(previous)
    assert any(workdir.glob("runs/*/version_*/checkpoints/last.ckpt")), mutation
