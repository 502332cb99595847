"""Knowledge injection: categories on a hand-built graph, no leak into training, warm starts, the command."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_concurrency import held_by_another_process

from grokkit.cli import main
from grokkit.data import TwoHopDataModule
from grokkit.data.injection import Injection, graph_of, inject
from grokkit.data.kg import EOS, graph_from_triples, query_keys
from grokkit.data.splits import SplitSpec, build_splits
from grokkit.data.store import _to_tensors
from grokkit.errors import ConfigError
from grokkit.experiments.analyze import analyze
from grokkit.experiments.transfer import start_checkpoints
from grokkit.experiments.transfer_report import (
    CATEGORIES,
    FINISHED,
    circuit_tag,
    refuse_different_data,
    write_report,
)
from grokkit.results.export import export
from grokkit.train.board import CHECKPOINT_KEY

ROOT = Path(__file__).resolve().parents[1]


def hand_built_graph():
    """12 entities, 6 relations; entity i has relations 0-2 with tails i+1, i+3, i+5 (mod 12)."""
    triples = [(f"e{i:02d}", f"r{k}", f"e{(i + 2 * k + 1) % 12:02d}") for i in range(12) for k in range(3)]
    triples += [("e00", "r5", "e00")]  # so that r3..r5 exist in the vocabulary; r3, r4 are never used
    triples += [("e01", "r3", "e02"), ("e02", "r4", "e03")]
    return graph_from_triples(triples, source="hand-built")


def injected(graph, **spec):
    splits = build_splits(
        graph, SplitSpec(phi=2.0, ood_fraction=0.1, eval_size=1000), np.random.default_rng(0)
    )
    source = _to_tensors(splits)
    names = {"entities": graph.entity_names, "relations": graph.relation_names}
    result = inject(graph_of(source["facts"], names), source, Injection(**spec), np.random.default_rng(1))
    return splits, result


def test_every_query_has_the_hops_its_category_says():
    graph = hand_built_graph()
    old, new = injected(graph, n_new=16, replay_size=40, eval_size=10_000)
    old_tail = {(h, r): t for h, r, t in old.facts.tolist()}
    tail = {(h, r): t for h, r, t in new.facts.tolist()}
    new_facts = {key for key in tail if key not in old_tail}
    assert len(new_facts) == 16 and len(tail) == len(old_tail) + 16  # no old fact changed or lost
    assert {tuple(item[:2]) for item in new.evals["new_atomic"].tolist()} == new_facts
    assert new.facts.max() < 2 + 12 + 6  # no new entity or relation token
    replayed = {tuple(item[:2]) for item in new.train.tolist() if item[4] != EOS} - new_facts
    assert replayed and all(
        not old.fact_is_ood[list(map(tuple, old.facts[:, :2].tolist())).index(k)] for k in replayed
    )
    # brute force over the combined graph: every two-hop query, classified by which hops are new / replayed
    expected = {"new_old": set(), "old_new": set(), "new_new": set()}
    for (h, r1), b in tail.items():
        for (b2, r2), t in tail.items():
            if b2 != b:
                continue
            kinds = [
                "new" if key in new_facts else "old" if key in replayed else None
                for key in ((h, r1), (b, r2))
            ]
            if None not in kinds and kinds != ["old", "old"]:
                expected["_".join(kinds)].add((h, r1, r2, t))
    for name, queries in expected.items():
        found = {tuple(item[:4]) for item in new.evals[name].tolist()}
        assert queries and found == queries, name
        assert new.counts[f"{name}_all"] == len(queries)
        for (h, r1, *_), b in zip(new.evals[name].tolist(), new.eval_bridges[name].tolist(), strict=True):
            assert tail[(h, r1)] == b


def test_no_new_composition_leaks_into_training(tmp_path):
    data = TwoHopDataModule(
        data_dir=str(tmp_path), n_entities=40, n_relations=10, out_degree=5, phi=3.0, eval_size=200,
        batch_size=16, injection=Injection(n_new=60, replay_size=300, eval_size=100),
    )  # fmt: skip
    data.setup("fit")
    source = TwoHopDataModule(data_dir=str(tmp_path), n_entities=40, n_relations=10, out_degree=5, phi=3.0)
    source.setup("fit")
    train, old_train = data.split_items("train").numpy(), source.split_items("train").numpy()
    two_hop = train[train[:, 4] == EOS]
    assert np.isin(query_keys(two_hop), query_keys(old_train[old_train[:, 4] == EOS])).all()
    assert np.isin(query_keys(data.split_items("new_atomic").numpy()), query_keys(train)).all()
    for name in ("new_old", "old_new", "new_new"):
        assert not np.isin(query_keys(data.split_items(name).numpy()), query_keys(train)).any()
    counts = data.manifest["counts"]
    assert counts["replay_atomic"] + counts["replay_inferred"] <= 300
    assert len(train) == counts["train"] == counts["replay_atomic"] + counts["replay_inferred"] + 60
    assert data.eval_splits[-4:] == ("new_atomic", "new_old", "old_new", "new_new")


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A real tiny run with trajectory checkpoints; its onsets are set afterwards (a tiny run does not grok)."""
    tmp = tmp_path_factory.mktemp("source")
    main([
        "fit", "--config", str(ROOT / "configs/tiny.yaml"), f"--data.data_dir={tmp / 'data'}",
        f"--trainer.logger.init_args.save_dir={tmp / 'runs'}", "--trainer.max_steps=30",
        "--trainer.val_check_interval=10", "--trainer.enable_progress_bar=false", "--trajectory.min_step=10",
        "--data.eval_size=50",
        "--trainer.callbacks+=grokkit.probes.GrokkingOnset",
    ])  # fmt: skip
    run = tmp / "runs" / "tiny" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    summary["grokking"] |= {"t_mem": 20, "t_gen": {"test_inferred_iid": {"0.5": 25}}}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("--data.n_entities=41", "has a vocabulary of 52 tokens, this data has 53"),
        ("--model.network.init_args.d_model=16", "holds a network of another shape"),
    ],
)
def test_checkpoint_of_another_vocabulary_or_shape_is_refused(source_run, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main([
            "fit", "--config", str(ROOT / "configs/tiny.yaml"), f"--data.data_dir={tmp_path / 'data'}",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", extra,
            f"--model.init_from={source_run / 'checkpoints' / 'last.ckpt'}",
        ])  # fmt: skip
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("grokkit: error: model.init_from") and message in error[0]
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # refused before any work


def write_overlay(path: Path, **data) -> Path:
    """A 10-step fine-tune with the logit lens on the categories and the injection of ``data``."""
    path.write_text(
        yaml.safe_dump({
            "trainer": {"max_steps": 10, "val_check_interval": 10, "enable_progress_bar": False, "callbacks": [
                {"class_path": "grokkit.probes.LogitLens",
                 "init_args": {"splits": ["new_old", "old_new", "new_new"], "sample_size": 50}}]},
            "data": data,
        })
    )  # fmt: skip
    return path


def refused(capsys, *args: str, exit_code: int = 2) -> str:
    """The one line of ``grokkit transfer ARGS``'s refusal."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["transfer", *args])
    assert exit_info.value.code == exit_code
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("grokkit: error: ")
    return error[0]


INJECTION = {"injection": {"n_new": 60, "replay_size": 300, "eval_size": 50}}


def test_transfer_deletes_only_its_own_starts_and_only_once_their_data_are_checked(
    source_run, tmp_path, capsys
):
    overlay = str(write_overlay(tmp_path / "overlay.yaml", **INJECTION))
    foreign = tmp_path / "runs" / "scratch" / "version_0" / "config.yaml"  # --out runs: runs/scratch is a run
    foreign.parent.mkdir(parents=True)
    foreign.write_text("")
    out = str(tmp_path / "runs")
    assert "grokkit transfer did not write it" in refused(
        capsys, "--source", str(source_run), "--config", overlay, "--out", out
    )
    assert foreign.is_file()
    copy = tmp_path / "x" / "grokked"  # the source run itself inside --out, where its start would go
    shutil.copytree(source_run, copy)
    line = refused(
        capsys, "--source", str(copy), "--config", overlay, "--out", str(copy.parent), "--starts", "grokked"
    )
    assert "and it is the source run" in line and (copy / "checkpoints" / "last.ckpt").is_file()
    # a rerun into a finished start whose injection cannot be built: refused before the start is emptied
    finished = tmp_path / "out" / "grokked" / FINISHED
    finished.parent.mkdir(parents=True)
    finished.write_text("{}")
    args = ["--source", str(source_run), "--config", overlay, "--out", str(finished.parent.parent)]
    assert "data.injection.n_new=1000" in refused(
        capsys, *args, "--starts", "grokked", "--data.injection.n_new=1000"
    )
    assert finished.is_file()
    # a start of older grokkit (no marker) that was killed midway: its last.ckpt's results say it is a start
    last = tmp_path / "out" / "scratch" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    for sections, kept in (({}, False), ({"transfer": {"step": 0}}, True)):
        torch.save(
            {"state_dict": {}, "global_step": 5, CHECKPOINT_KEY: {"sections": sections, "history": {}}}, last
        )
        line = refused(capsys, *args, "--starts", "scratch", "--data.injection.n_new=1000")
        assert ("data.injection.n_new=1000" in line) is kept and last.is_file(), line


@pytest.mark.parametrize(
    ("start", "changed", "message"),
    [
        ("grokked", "--data.seed=1", "last.ckpt was trained on another dataset (data.seed=0 there)"),
        ("memorized", "--data.ood_fraction=0.1", "step=00000020.ckpt was trained on another dataset"),
        ("scratch", "--data.phi=2", "was trained on another dataset (data.phi=3.0 there)"),
    ],
)
def test_a_start_is_fine_tuned_only_on_the_dataset_its_source_learned(
    source_run, tmp_path, capsys, start, changed, message
):
    overlay = str(write_overlay(tmp_path / "overlay.yaml", **INJECTION))
    finished = tmp_path / "out" / start / FINISHED
    finished.parent.mkdir(parents=True)
    finished.write_text("{}")
    args = ["--source", str(source_run), "--config", overlay, "--out", str(finished.parent.parent)]
    line = refused(capsys, *args, "--starts", start, changed, "--data.eval_size=40")  # evaluation only: kept
    assert message in line and "eval_size" not in line.partition("there")[0]
    assert finished.is_file()


@pytest.mark.parametrize("held", ["out", "start"])
def test_a_transfer_into_an_out_another_process_works_in_is_refused_untouched(
    source_run, tmp_path, capsys, held
):
    out = tmp_path / "out"
    (out / "scratch").mkdir(parents=True)
    (out / "scratch" / FINISHED).write_text("{}")
    overlay = str(write_overlay(tmp_path / "overlay.yaml", **INJECTION))
    args = ["--source", str(source_run), "--config", overlay, "--out", str(out), "--starts", "scratch"]
    with held_by_another_process(out if held == "out" else out / "scratch"):  # e.g. a fit resuming the start
        line = refused(capsys, *args, exit_code=75)
    assert line == (
        f"grokkit: error: --out {out}: another grokkit process is running in it (it holds the directory's "
        "lock); wait for it to end, or choose another --out"
        if held == "out"
        else f"grokkit: error: {out / 'scratch'} is being trained by another process (it holds the run "
        "directory's lock); wait for it to end, or stop it and resume with --ckpt_path last"
    )
    assert [path.name for path in (out / "scratch").iterdir()] == [FINISHED]


@pytest.mark.parametrize("unset", [[], ["--data.injection=null"]])
def test_a_transfer_without_injected_facts_is_refused(source_run, tmp_path, capsys, unset):
    # with --data.injection=null: an overlay that sets it (for the lens on its splits), unset again
    overlay = write_overlay(tmp_path / "overlay.yaml", **(INJECTION if unset else {}))
    args = ["--source", str(source_run), "--config", str(overlay), "--out", str(tmp_path / "out"), *unset]
    assert refused(capsys, *args).startswith("grokkit: error: data.injection is not set")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--starts", "grokked,grokked"],
            "--starts grokked,grokked: choose among grokked,memorized,scratch, each once",
        ),
        (
            ["--model.init_from", "x.ckpt"],
            "model.init_from: grokkit transfer gives each start its checkpoint (choose them with --starts); "
            "leave it out of the overlays and flags",
        ),
        (
            ["--trainer.logger.init_args.save_dir=elsewhere"],
            "trainer.logger: grokkit transfer logs each start into its directory under --out",
        ),
        (
            ["--config", "OVERLAY"],  # an overlay's init_from would be replaced by each start's
            "model.init_from: grokkit transfer gives each start its checkpoint (choose them with --starts); "
            "leave it out of the overlays and flags (set in OVERLAY, line 4)",
        ),
    ],
)
def test_what_transfer_sets_itself_is_refused(source_run, tmp_path, capsys, args, message):
    out, overlay = tmp_path / "out", tmp_path / "overlay.yaml"
    overlay.write_text(
        "data:\n  injection: {n_new: 60, replay_size: 300, eval_size: 50}\nmodel:\n  init_from: x.ckpt\n"
    )
    args = [str(overlay) if arg == "OVERLAY" else arg for arg in args]
    line = refused(capsys, "--source", str(source_run), "--out", str(out), *args)
    assert message.replace("OVERLAY", str(overlay)) in line
    assert not out.exists()


@pytest.mark.slow
def test_transfer_command_runs_three_starts_and_reports(source_run, tmp_path, capsys, monkeypatch):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump({
            "trainer": {"max_steps": 10, "val_check_interval": 10, "enable_progress_bar": False, "callbacks": [
                {"class_path": "grokkit.probes.LogitLens",
                 "init_args": {"splits": ["new_old", "old_new", "new_new"], "sample_size": 50}},
                {"class_path": "grokkit.probes.CausalTracing",
                 "init_args": {"split": "new_old", "sample_size": 50, "every_n_steps": 10}}]},
            "data": {"injection": {"n_new": 60, "replay_size": 300, "eval_size": 50}},
        })
    )  # fmt: skip
    out = tmp_path / "out"
    stale = out / "scratch" / "events.out.tfevents.0.an-older-transfer"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    (out / "scratch" / FINISHED).write_text("{}")  # an older transfer's start
    main(["transfer", "--source", str(source_run), "--config", str(overlay), "--out", str(out)])
    assert not stale.exists()  # a start trains afresh into its directory
    with open(out / "transfer.csv") as f:
        rows = {row["start"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["grokked", "memorized", "scratch"]
    assert (
        rows["grokked"]["source_step"] == "30" and rows["memorized"]["source_step"] == "20"
    )  # first >= t_mem
    assert all(0 <= float(row["new_old_em_max"]) <= 1 for row in rows.values())
    traced = board(out / "grokked")["sections"]["causal_tracing"]
    assert traced["split"] == "new_old"  # causal tracing ran on a category of injected facts
    table = (out / "transfer.md").read_text()
    assert table.count("\n") == 5 and "(n=60)" in table and "(n=50)" in table
    assert (out / "transfer.png").read_bytes()[:4] == b"\x89PNG"
    # a start's config.yaml holds its injection as a mapping; grokkit export builds the run's data from it
    items = torch.load(export(out / "grokked"), weights_only=True)["items"]  # its new-fact queries too
    assert list(items) == ["train_inferred", "test_inferred_iid", "test_inferred_ood", *CATEGORIES]
    assert len(items["new_old"]) == 50
    # each start really holds the source's weights of its step: its step-0 validation is the source's there
    source = dict(board(source_run)["history"]["val"])
    for start, step in (("grokked", 30), ("memorized", 20)):
        first_step, first = board(out / start)["history"]["val"][0]
        assert first_step == 0 and first["id_atomic/acc"] == source[step]["id_atomic/acc"]
        assert first["test_inferred_iid/acc"] == source[step]["test_inferred_iid/acc"]
    config = yaml.safe_load((out / "memorized" / "config.yaml").read_text())
    assert config["model"]["init_from"].endswith("step=00000020.ckpt")
    assert yaml.safe_load((out / "scratch" / "config.yaml").read_text())["model"]["init_from"] is None
    # a start whose fit never returned (killed midway: a periodic last.ckpt, no marker) is left out, by name
    (out / "memorized" / FINISHED).unlink()
    capsys.readouterr()
    monkeypatch.chdir(source_run.parent)  # the same source, spelled relative to the working directory
    main(
        [
            "transfer",
            "--source",
            source_run.name,
            "--config",
            str(overlay),
            "--out",
            str(out),
            "--starts",
            "grokked,scratch",
        ]
    )
    assert f"{out / 'memorized'} left out: its fit did not finish" in capsys.readouterr().out
    with open(out / "transfer.csv") as f:
        assert [row["start"] for row in csv.DictReader(f)] == ["grokked", "scratch"]
    # a start of another source in the same OUT (an older command's) is refused, not mixed into the table
    checkpoint = out / "scratch" / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, weights_only=False)
    sections = state[CHECKPOINT_KEY]["sections"]
    origin = sections["transfer"]
    sections["transfer"] = {**origin, "source": "runs/another/version_0"}
    torch.save(state, checkpoint)
    with pytest.raises(ConfigError, match="fine-tuned from different runs"):
        write_report(out)
    sections["transfer"] = {**origin, "source": source_run.name}  # as typed, relative (the cwd is its parent)
    torch.save(state, checkpoint)
    write_report(out)
    count = next(key for key in origin if key.startswith("eval_"))
    data = origin["data"]
    for changed, message in (
        ({count: origin[count] + 1}, f"{count}: grokked {origin[count]}, scratch {origin[count] + 1}"),
        # the same counts, other new facts
        (
            {"data": {**data, "injection": {**data["injection"], "replay_size": 250}}},
            "data.injection.replay_size: grokked 300, scratch 250",
        ),
        ({"data": {**data, "seed": 1}}, r"data.seed: grokked 0, scratch 1\)"),
    ):
        sections["transfer"] = {**origin, **changed}
        torch.save(state, checkpoint)
        with pytest.raises(ConfigError, match=f"fine-tuned on different data \\({message}"):
            write_report(out)
    # the start's config.yaml names its checkpoint for any working directory; analyze reads the start's own
    config_file = out / "grokked" / "config.yaml"
    init_from = Path(yaml.safe_load(config_file.read_text())["model"]["init_from"])
    assert init_from.is_absolute() and init_from.samefile(source_run / "checkpoints" / "last.ckpt")
    monkeypatch.chdir(tmp_path)
    assert analyze(out / "grokked")["analysis"]["steps"] == [10]
    config_file.write_text(config_file.read_text().replace(str(init_from), str(tmp_path / "moved-away.ckpt")))
    assert analyze(out / "grokked")["analysis"]["steps"] == [10]


def board(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)[CHECKPOINT_KEY]


def test_a_category_traced_by_causal_tracing_reports_the_causal_strength_as_its_circuit_signal():
    curves = {
        "causal_tracing/r1_mid_strength": [(0, 0.2), (200, 0.7)],
        "logit_lens/new_old/circuit_signal": [(0, 0.05)],
        "logit_lens/old_new/circuit_signal": [(0, 0.04)],
    }
    assert circuit_tag(curves, "new_old", traced="new_old") == "causal_tracing/r1_mid_strength"
    assert circuit_tag(curves, "old_new", traced="new_old") == "logit_lens/old_new/circuit_signal"
    assert circuit_tag(curves, "new_old", traced="train_inferred") == "logit_lens/new_old/circuit_signal"
    assert circuit_tag(curves, "new_new", traced="new_old") is None
    del curves["causal_tracing/r1_mid_strength"]  # no correctly answered query to trace: the lens's signal
    assert circuit_tag(curves, "new_old", traced="new_old") == "logit_lens/new_old/circuit_signal"


@pytest.mark.parametrize(
    ("grokking", "starts", "message"),
    [
        (
            {"t_mem": None, "t_gen": {"test_inferred_iid": {"0.9": 800}}},
            ("memorized",),
            "the run has no t_mem",
        ),
        ({"t_mem": 300, "t_gen": {"test_inferred_iid": {"0.9": None}}}, ("grokked",), "the run has no t_gen"),
        (
            {"t_mem": 800, "t_gen": {"test_inferred_iid": {"0.9": 700}}},
            ("memorized",),
            r"generalized \(t_gen 700, test_inferred_iid\) no later than it memorized \(t_mem 800\).*--starts grokked,scratch",
        ),
        # a run that never memorized (by the ID training splits) but generalized is a grokked source
        ({"t_mem": None, "t_gen": {"test_inferred_iid": {"0.9": 800}}}, ("grokked",), "last.ckpt not found"),
    ],
)
def test_each_start_asks_the_source_run_for_what_it_needs(tmp_path, grokking, starts, message):
    (tmp_path / "summary.json").write_text(json.dumps({"grokking": grokking}))
    with pytest.raises(ConfigError, match=message):
        start_checkpoints(tmp_path, "test_inferred_iid", starts)
    assert start_checkpoints(tmp_path, "test_inferred_iid", ("scratch",)) == {}


def test_the_report_compares_the_data_records_all_its_starts_hold():
    """A start of older grokkit records its evaluation counts only: those are compared, and nothing else."""
    older, newer = {"eval_new_old": 50}, {"data.seed": 0, "eval_new_old": 50}
    refuse_different_data(Path("out"), {"grokked": newer, "scratch": older})
    with pytest.raises(ConfigError, match=r"different data \(eval_new_old: grokked 50, scratch 40\)"):
        refuse_different_data(Path("out"), {"grokked": newer, "scratch": {"eval_new_old": 40}})
