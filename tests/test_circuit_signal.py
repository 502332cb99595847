"""The circuit signal is not atomic-fact recall: a model trained on atomic facts only keeps it at chance.

Each model family is trained for real (tiny) at phi 0, so no composition is ever trained. Its atomic facts
are memorized (accuracy 1.0), which makes any-slot Bridge Found high for the decoder (the r1 position is
trained to output tail(h, r1), the bridge), while ``circuit_signal`` stays at its measured chance level.
"""

import json

import pytest
from test_cli import tiny_args

from grokkit.cli import main

pytestmark = pytest.mark.slow

RECURSIVE = [
    "--model.network=grokkit.models.Recursive",
    "--model.network.init_args.d_model=64",
    "--model.network.init_args.H_cycles=1",
    "--model.network.init_args.L_cycles=1",
]


@pytest.mark.parametrize("family", ["decoder", "recursive"])
def test_atomic_only_control_keeps_the_circuit_signal_at_chance(tmp_path, family):
    lens = {"class_path": "grokkit.probes.LogitLens", "init_args": {"splits": ["test_inferred_iid"]}}
    main(tiny_args(
        tmp_path,
        "--data.phi=0", "--data.test_iid_probability=0.5", "--model.lr=2e-3",
        "--trainer.max_steps=600", "--trainer.val_check_interval=200", "--trainer.enable_progress_bar=false",
        f"--trainer.callbacks+={json.dumps(lens)}", *(RECURSIVE if family == "recursive" else []),
    ))  # fmt: skip
    summary = json.loads((tmp_path / "runs/tiny/version_0/summary.json").read_text())
    lens = summary["logit_lens"]
    assert summary["val"]["id_atomic/acc"] == 1.0 and summary["val"]["ood_atomic/acc"] == 1.0
    assert summary["val"]["test_inferred_iid/acc"] < 0.1  # nothing composes
    assert lens["iid/circuit_signal"] <= lens["iid/circuit_signal_chance"] + 0.1
    if family == "decoder":  # the confound the circuit signal leaves out
        assert lens["iid/bridge_found_any"] >= 0.9 > lens["iid/circuit_signal"] + 0.5
