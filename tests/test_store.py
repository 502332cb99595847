"""Dataset directories: cached, verified, and refused with one clear line when corrupt or mismatched."""

import json

import pytest
import torch

from grokkit.data import TwoHopDataModule
from grokkit.errors import ConfigError

SMALL = {"n_entities": 30, "n_relations": 8, "out_degree": 4, "phi": 2.0, "eval_size": 50, "batch_size": 16}


def make(tmp_path, **overrides):
    return TwoHopDataModule(data_dir=str(tmp_path), **{**SMALL, **overrides})


def test_dataset_is_written_once_and_reused(tmp_path):
    first = make(tmp_path)
    first.setup()
    manifest = json.loads((first.dataset_dir / "manifest.json").read_text())
    assert manifest["counts"]["train"] == len(first.split_items("train"))
    assert manifest["params"]["phi"] == 2.0 and len(manifest["sha256"]) == 64
    mtime = (first.dataset_dir / "tensors.pt").stat().st_mtime_ns
    second = make(tmp_path)
    second.setup()
    assert (second.dataset_dir / "tensors.pt").stat().st_mtime_ns == mtime
    assert torch.equal(first.split_items("train"), second.split_items("train"))
    assert make(tmp_path, phi=3.0).dataset_dir != first.dataset_dir
    # a number typed as an integer (a sweep's grid value `phi=[2, 3]`) names the dataset the CLI's float does
    assert make(tmp_path, phi=2, ood_fraction=0).dataset_dir == make(tmp_path, ood_fraction=0.0).dataset_dir


def test_corrupt_tensors_are_refused(tmp_path):
    data = make(tmp_path)
    data.setup()
    with open(data.dataset_dir / "tensors.pt", "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    with pytest.raises(ConfigError, match="does not match the hash.*delete"):
        make(tmp_path).setup()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["params"].update(phi=9.0), "built with other parameters \\(phi\\)"),
        (lambda m: m.pop("sha256"), "incomplete"),
    ],
)
def test_mismatched_manifest_is_refused(tmp_path, edit, message):
    data = make(tmp_path)
    data.setup()
    path = data.dataset_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=message):
        make(tmp_path).setup()


def test_unreadable_manifest_and_missing_manifest_are_refused(tmp_path):
    data = make(tmp_path)
    data.setup()
    (data.dataset_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        make(tmp_path).setup()
    (data.dataset_dir / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="has no manifest.json"):
        make(tmp_path).setup()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_entities": 0}, "data.n_entities=0 must lie in \\[1, 1000000\\]"),
        ({"out_degree": 9}, "data.out_degree=9 is larger than data.n_relations=8"),
        ({"hop1_ratio": 1.5}, "data.hop1_ratio=1.5 must lie in \\[0, 1\\]"),
        ({"phi": float("nan")}, "data.phi=nan must lie in \\[0, 10000\\]"),
        ({"batch_size": -1}, "data.batch_size=-1"),
    ],
)
def test_bad_parameters_are_refused_at_construction(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make(tmp_path, **overrides)


def test_facts_file_is_read_and_malformed_lines_named(tmp_path):
    facts = tmp_path / "facts.tsv"
    rows = [f"p{i}\tparent\tp{(i + 1) % 20}" for i in range(20)] + [
        f"p{i}\tfriend\tp{(i * 7) % 20}" for i in range(20)
    ]
    facts.write_text("\n".join(rows) + "\n")
    data = TwoHopDataModule(
        data_dir=str(tmp_path), facts_file=str(facts), phi=1.0, ood_fraction=0.1, eval_size=20, batch_size=8
    )
    assert data.vocab_size == 2 + 20 + 2
    data.setup()
    assert data.manifest["counts"]["atomic"] == 40 and data.manifest["vocab"]["relations"] == [
        "friend",
        "parent",
    ]
    facts.write_text("a\tr\tb\nbroken line\n")
    with pytest.raises(ConfigError, match="facts.tsv:2: malformed fact"):
        _ = TwoHopDataModule(data_dir=str(tmp_path), facts_file=str(facts)).vocab_size
    jsonl = tmp_path / "facts.jsonl"
    jsonl.write_text('{"head": "a", "relation": "r", "tail": "b"}\n{"head": "a"}\n')
    with pytest.raises(ConfigError, match="facts.jsonl:2: malformed fact"):
        _ = TwoHopDataModule(data_dir=str(tmp_path), facts_file=str(jsonl)).vocab_size


def test_training_order_is_a_function_of_seed_and_step(tmp_path):
    data = make(tmp_path)
    data.setup()
    batches = iter(data.train_dataloader())
    first = [next(batches).clone() for _ in range(12)]
    n_train = len(data.split_items("train"))
    one_epoch = torch.cat(first[: n_train // 16])
    assert len(set(one_epoch.tolist())) == len(one_epoch)  # without replacement within an epoch
    dataset = data.train_dataloader().dataset
    dataset.start_step = lambda: 5
    resumed = iter(dataset)
    assert torch.equal(next(resumed), first[5])
