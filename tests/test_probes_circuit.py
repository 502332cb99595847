"""Logit lens, causal tracing and the circuit detector on tiny untrained models, plus one real CLI run.

Untrained models rarely answer correctly, so some tests relabel items: ``t`` (or the bridge) becomes what
the model itself predicts, which makes "top-1", "MRR = 1" and "answered correctly" known in advance.
"""

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from grokkit.cli import main
from grokkit.data import TwoHopDataModule
from grokkit.errors import ConfigError
from grokkit.models import Decoder, Recursive
from grokkit.probes import CausalTracing, CircuitDetector, LogitLens, ResultsBoard
from grokkit.probes.causal_tracing import causal_strengths, counterfactuals
from grokkit.probes.figures import POSITION_NAMES, heatmap, publish_heatmap
from grokkit.probes.logit_lens import FOUND, rank_of
from grokkit.ranges import import_class

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "decoder": lambda vocab: Decoder(vocab, 5, d_model=32, n_heads=2, n_layers=4),
    "shared_decoder": lambda vocab: Decoder(vocab, 5, d_model=32, n_heads=2, n_layers=4, n_unique_layers=2),
    "recursive": lambda vocab: Recursive(vocab, 5, d_model=32, H_cycles=2, L_cycles=2),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    dm = TwoHopDataModule(
        data_dir=str(tmp_path_factory.mktemp("data")), n_entities=30, n_relations=8, out_degree=4,
        phi=2.0, eval_size=50, batch_size=16,
    )  # fmt: skip
    dm.setup()
    return dm


@pytest.fixture(params=list(MODELS))
def model(request, data):
    torch.manual_seed(0)
    return MODELS[request.param](data.vocab_size).eval()


@torch.no_grad()
def predicted(model, items, position=None, stage=None):
    """The model's own top-1 token per item at ``position`` (default: the answer), via the lens at ``stage``."""
    inputs, _ = model.inputs_and_targets(items)
    logits, states = model(inputs, return_states=True)
    if stage is not None:
        logits = model.unembed(states[stage])
    position = model.answer_position(items) if position is None else position
    return logits[torch.arange(len(items)), position].argmax(-1)


def relabeled(model, items):
    """Items whose answer ``t`` is the model's own prediction: the model answers all of them correctly."""
    items = items.clone()
    items[:, 3] = predicted(model, items)
    return items


def run_probe(probe, model, datamodule):
    with torch.no_grad():
        return probe.compute(
            SimpleNamespace(datamodule=datamodule, callbacks=[ResultsBoard()]),
            SimpleNamespace(eval_net=model),
        )


# ----- logit lens -----
def test_logit_lens_final_stage_is_the_models_own_prediction(model, data):
    items = data.split_items("train_inferred")  # read as if it were the OOD split
    half = len(items) // 2
    items = torch.cat([relabeled(model, items[:half]), items[half:]])  # about half answered correctly
    middle = model.n_stages // 2
    bridges = predicted(model, items, position=1, stage=middle)  # the lens at (middle, r1) shows the bridge
    fake = SimpleNamespace(split_items=lambda split: items, split_bridges=lambda split: bridges)
    accuracy = (predicted(model, items) == items[:, 3]).float().mean().item()
    result = run_probe(LogitLens(splits=("test_inferred_ood",)), model, fake)
    last = model.n_stages - 1
    assert accuracy >= 0.5
    assert result["ood/target_top1/answer"][last] == pytest.approx(accuracy)
    assert result[f"ood/target_mrr/answer/stage{last}"] >= accuracy
    assert result[f"ood/bridge_mrr/r1/stage{middle}"] == 1.0 and result["ood/bridge_top1/r1"][middle] == 1.0
    assert result["ood/bridge_found_any"] == 1.0 and result["ood/target_found_answer_slot"] >= accuracy
    assert result["ood/best_bridge_stage"] in range(model.n_stages)
    bridge_map = torch.tensor(result["ood/bridge_top1_map"])
    shown = 3 if isinstance(model, Decoder) else 5  # a decoder's position 3 reads t
    assert bridge_map.shape == (model.n_stages, shown) and bridge_map[middle, 1] == 1.0
    axes = heatmap(bridge_map, "title", "fraction").axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == list(POSITION_NAMES[:shown])
    assert len(axes.get_yticklabels()) == model.n_stages


def test_logit_lens_rates_and_keys(data):
    model = MODELS["recursive"](data.vocab_size).eval()
    result = run_probe(LogitLens(splits=("test_inferred_ood", "train_inferred"), sample_size=20), model, data)
    scalars = [key for key, value in result.items() if isinstance(value, (int, float))]
    assert len(scalars) == 2 * (3 * model.n_stages + 7)  # two splits: 3 MRRs per stage, 6 rates, best stage
    for prefix in ("ood", "train_inferred"):
        for key in FOUND:
            assert 0.0 <= result[f"{prefix}/{key}"] <= 1.0
        assert all(0.0 < result[f"{prefix}/r2_mrr/r2/stage{s}"] <= 1.0 for s in range(model.n_stages))
    with pytest.raises(ConfigError, match="logit_lens.splits"):
        LogitLens(splits=("id_atomic",))


def test_a_nan_logit_never_ranks_a_token_first():
    nan = float("nan")
    logits = torch.tensor([[0.5, 1.0, 2.0], [nan, 1.0, 2.0], [nan, nan, nan]])
    assert rank_of(logits, torch.tensor([1, 2, 0])).tolist() == [1, 1, 3]


def test_heatmap_has_labelled_axes_a_colour_bar_and_a_png(tmp_path):
    values = torch.tensor([[0.0, 1.0, 0.25], [float("nan"), 0.5, 0.75]])
    figure = heatmap(values, "causal tracing", "fraction changed", first_stage=1)
    axes, colour_bar = figure.axes
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == (
        "input position",
        "stage",
        "causal tracing",
    )
    assert [label.get_text() for label in axes.get_yticklabels()] == ["1", "2"]
    assert colour_bar.get_ylabel() == "fraction changed"
    assert sorted(text.get_text() for text in axes.texts) == ["0.00", "0.25", "0.50", "0.75", "1.00", "n/a"]

    writer = SummaryWriter(str(tmp_path))
    publish_heatmap(writer, 200, "causal_tracing", "strength_stage_x_position", values, "title", "fraction")
    writer.close()
    png = matplotlib.image.imread(
        tmp_path / "figures" / "causal_tracing_strength_stage_x_position_step00000200.png"
    )
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    (image,) = events.Images("probe/causal_tracing/strength_stage_x_position")
    assert image.step == 200 and (image.height, image.width) == png.shape[:2]
    assert png.shape[0] >= 150 and png.shape[1] >= 300  # readable, not 72 x 120


# ----- causal tracing -----
@pytest.mark.parametrize("answered_only", [False, True])
def test_counterfactuals_change_the_answer_with_id_tokens(data, answered_only):
    """Every alternative changes the answer; with ``answered_only`` its query has one (Wang et al.), without it
    some h' and r1' alternatives make a query with no answer (the documented runs' draws)."""
    items = data.split_items("train_inferred")
    facts, fact_is_ood = data.tables["facts"], data.tables["fact_is_ood"]
    tail = {(h, r): t for h, r, t in facts.tolist()}
    id_facts = {
        (h, r) for (h, r, _), ood in zip(facts.tolist(), fact_is_ood.tolist(), strict=True) if not ood
    }
    id_heads = {h for h, _ in id_facts}
    swapped = counterfactuals(items, facts, fact_is_ood, torch.Generator().manual_seed(0), answered_only)
    unanswered = [0, 0, 0]
    for position, (counterfactual, valid) in enumerate(swapped):
        assert valid.float().mean() > 0.5
        for original, new in zip(items[valid].tolist(), counterfactual[valid].tolist(), strict=True):
            h, r1, r2, t = new[:4]
            assert [i for i in range(5) if original[i] != new[i]] == [position]
            answer = tail.get((tail.get((h, r1)), r2))
            assert answer != t  # the true answer changed (or, without answered_only, is undefined)
            unanswered[position] += answer is None
            bridge = tail[(original[0], original[1])]
            assert (h in id_heads, (h, r1) in id_facts, (bridge, r2) in id_facts)[position]
            assert not answered_only or (position > 0 or (h, r1) in id_facts)
    assert unanswered == [0, 0, 0] if answered_only else unanswered[0] > 0 and unanswered[1] > 0, unanswered
    assert unanswered[2] == 0  # an r2' is drawn among (b, r2') facts: its query always has an answer


def test_the_shipped_probes_config_traces_with_answered_alternatives():
    """``configs/probes/answered_alternatives.yaml`` (for ``grokkit analyze --probes-config``) builds."""
    (callback,) = yaml.safe_load((ROOT / "configs/probes/answered_alternatives.yaml").read_text())["trainer"][
        "callbacks"
    ]
    probe = import_class(callback["class_path"])(**callback["init_args"])
    assert isinstance(probe, CausalTracing) and probe.answered_only and probe.every_n_steps == 1


def test_patching_a_runs_own_states_changes_nothing(model, data):
    items = relabeled(model, data.split_items("train_inferred"))
    with torch.no_grad():
        for position in range(3):
            strengths = causal_strengths(model, items, items, position, range(1, model.n_stages - 1))
            assert strengths.shape == (model.n_stages - 2,) and torch.all(strengths == 0)


def test_causal_tracing_probe(model, data):
    items = relabeled(model, data.split_items("train_inferred"))
    fake = SimpleNamespace(split_items=lambda split: items, tables=data.tables)
    result = run_probe(CausalTracing(sample_size=40), model, fake)
    assert result["normal_accuracy"] == 1.0 and all(result[f"n_queries/{p}"] > 20 for p in ("h", "r1", "r2"))
    stages = range(1, model.n_stages - 1)
    assert all(0.0 <= result[f"strength/{p}/stage{s}"] <= 1.0 for p in ("h", "r1", "r2") for s in stages)
    assert result["mid_stage"] == round(0.625 * (model.n_stages - 1))
    assert result["r1_mid_strength"] == result[f"strength/r1/stage{result['mid_stage']}"]
    assert torch.tensor(result["strength_map"]).shape == (len(stages), 3)
    with pytest.raises(ConfigError, match="mid_stage=9"):
        run_probe(CausalTracing(mid_stage=9), model, fake)
    with pytest.raises(ConfigError, match="causal_tracing.split"):
        CausalTracing(split="ood_atomic")


def test_causal_tracing_leaves_out_wrong_answers(data):
    model = MODELS["decoder"](data.vocab_size).eval()
    items = data.split_items("train_inferred").clone()
    items[:, 3] = (predicted(model, items) + 1) % data.vocab_size  # never the model's answer
    result = run_probe(
        CausalTracing(), model, SimpleNamespace(split_items=lambda split: items, tables=data.tables)
    )
    assert result["normal_accuracy"] == 0.0 and result["n_queries/r1"] == 0
    assert "r1_mid_strength" not in result and not any(key.startswith("strength/") for key in result)


# ----- circuit detector -----
def detect(bridge_found, causal=(), **kwargs):
    board = ResultsBoard()
    for step, value in causal:
        board.publish("causal_tracing", step, {"r1_mid_strength": value})
    for step, value in enumerate(bridge_found, start=1):
        board.publish("logit_lens", 100 * step, {"ood/circuit_signal": value})
    model = SimpleNamespace(circuit_signal=Recursive.circuit_signal)
    return CircuitDetector(**kwargs).compute(
        SimpleNamespace(callbacks=[board]), SimpleNamespace(eval_net=model)
    )


def test_circuit_formed_after_a_sustained_run():
    history = [0.1, 0.96, 0.97, 0.5, 0.96, 0.97, 0.98]
    assert detect(history[:4]) | {"reason": ""} == {
        "formed": 0,
        "formed_step": None,
        "signal": 0.5,
        "key": "logit_lens ood/circuit_signal",
        "reason": "",
    }
    result = detect(history)
    assert result["formed"] == 1 and result["formed_step"] == 500 and result["signal"] == 0.98
    assert "step 500" in result["reason"]
    assert detect(history, consecutive=2)["formed_step"] == 200
    assert detect(history, threshold=0.99)["formed"] == 0
    assert detect([])["formed"] == 0 and "no logit_lens" in detect([])["reason"]


def test_a_decoder_watches_the_causal_strength_of_the_bridge_state():
    board = ResultsBoard()
    for step, value in [(200, 0.5), (400, 0.82), (600, 0.85), (800, 0.9)]:
        board.publish("causal_tracing", step, {"r1_mid_strength": value})
        board.publish("logit_lens", step, {"iid/circuit_signal": 0.04})  # at chance in a decoder
    module = SimpleNamespace(eval_net=SimpleNamespace(circuit_signal=Decoder.circuit_signal))
    trainer = SimpleNamespace(callbacks=[board])
    result = CircuitDetector(split="test_inferred_iid").compute(trainer, module)
    assert result["key"] == "causal_tracing r1_mid_strength" and result["formed_step"] == 400
    configured = CircuitDetector(split="test_inferred_iid", key="iid/circuit_signal").compute(trainer, module)
    assert configured["key"] == "logit_lens iid/circuit_signal" and configured["formed"] == 0


def test_circuit_can_require_causal_strength():
    history = [0.1, 0.96, 0.97, 0.5, 0.96, 0.97, 0.98]
    assert detect(history, min_causal_strength=0.5)["formed"] == 0
    assert detect(history, [(200, 0.2), (400, 0.4)], min_causal_strength=0.5)["formed"] == 0
    assert detect(history, [(200, 0.2), (600, 0.7)], min_causal_strength=0.5)["formed_step"] == 600
    assert detect(history, [(300, 0.7)], min_causal_strength=0.5)["formed_step"] == 500


# ----- a real run through the CLI -----
@pytest.mark.slow
def test_probes_in_a_tiny_fit(tmp_path):
    probes = [
        {
            "class_path": "grokkit.probes.CircuitDetector",
            "init_args": {"key": "ood/circuit_signal", "threshold": 0.0},
        },
        {"class_path": "grokkit.probes.LogitLens", "init_args": {"sample_size": 100}},
        {"class_path": "grokkit.probes.CausalTracing", "init_args": {"every_n_steps": 40, "sample_size": 50}},
    ]  # listed detector first: the CLI runs measurements before detectors
    main([
        "fit", "--config", str(ROOT / "configs/tiny.yaml"),
        f"--data.data_dir={tmp_path / 'data'}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        *(f"--trainer.callbacks+={json.dumps(probe)}" for probe in probes),
    ])  # fmt: skip
    run = tmp_path / "runs" / "tiny" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["logit_lens"]["step"] == 60 and 0.0 <= summary["logit_lens"]["ood/bridge_found_any"] <= 1.0
    assert summary["causal_tracing"]["step"] == 60 and "strength_map" in summary["causal_tracing"]
    assert summary["circuit_detector"]["formed"] == 1 and summary["circuit_detector"]["formed_step"] == 20
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    bridge_found = events.Scalars("probe/logit_lens/ood/bridge_found_any")
    assert [event.step for event in bridge_found] == [20, 40, 60]
    assert "probe/logit_lens/ood/bridge_top1_stage_x_position" in events.Tags()["images"]
    assert "probe/causal_tracing/strength_stage_x_position" in events.Tags()["images"]
