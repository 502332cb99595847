"""RunClassifier on constructed trajectories shaped like He et al.'s regimes, one per label."""

from types import SimpleNamespace

import pytest

from grokkit.errors import ConfigError
from grokkit.models import Recursive
from grokkit.probes import ResultsBoard, RunClassifier
from grokkit.probes.classifier import LABELS, Thresholds, classify

STEPS = range(10_000, 1_600_001, 10_000)


def curve(value) -> list[tuple[int, float]]:
    return [(step, value(step)) for step in STEPS]


def train_splits(value: float) -> dict[str, float]:
    """The training splits whose lowest accuracy is the training accuracy, all at ``value``."""
    return {"id_atomic/acc": value, "train_inferred/acc": value}


def memorized_at(t_mem: int) -> list[tuple[int, float]]:
    return curve(lambda step: 1.0 if step >= t_mem else 0.5)


def oscillating(low: float, high: float):
    return lambda step: low if (step // 10_000) % 2 else high


def test_real_grokking_circuit_forms_before_the_late_rise():  # natural regime (A)
    accuracy = curve(lambda step: oscillating(0.6, 0.85)(step) if step >= 390_000 else 0.0)
    bridge = curve(lambda step: 0.99 if step >= 330_000 else 0.2)
    label, reason = classify(memorized_at(100_000), accuracy, bridge, split="test_inferred_ood")
    assert label == "real_grokking"
    assert "from step 390000, 3.9x t_mem=100000" in reason and "from step 330000" in reason


def test_fake_grokking_high_accuracy_while_the_bridge_stays_low():  # second-hop full augmentation (D)
    accuracy = curve(lambda step: 0.96 if step >= 680_000 else 0.6 if step >= 290_000 else 0.0)
    bridge = curve(oscillating(0.15, 0.7))
    label, reason = classify(memorized_at(80_000), accuracy, bridge)
    assert label == "fake_grokking"
    assert ">= 0.9 from step 680000" in reason and "median 0.42 < 0.8" in reason and "max 0.70" in reason


def test_circuit_without_accuracy_bridge_early_answers_much_later():  # first-hop full augmentation
    accuracy = curve(lambda step: 0.6 if step >= 490_000 else 0.03)
    bridge = curve(lambda step: 0.99 if step >= 140_000 else 0.1)
    label, reason = classify(memorized_at(95_000), accuracy, bridge)
    assert label == "circuit_without_accuracy"
    assert "held >= 0.95 from step 140000" in reason and "3.5x after the circuit" in reason


def test_circuit_without_accuracy_answers_never_rise():
    bridge = curve(lambda step: 0.99 if step >= 140_000 else 0.1)
    label, reason = classify(memorized_at(95_000), curve(lambda step: 0.03), bridge)
    assert label == "circuit_without_accuracy" and "max 0.03 through step 1600000" in reason


def test_no_delay_accuracy_rises_with_memorization():  # both-hop full augmentation (B)
    accuracy = curve(lambda step: 1.0 if step >= 40_000 else 0.0)
    bridge = curve(lambda step: 1.0 if step >= 190_000 else 0.9 if step >= 60_000 else 0.0)
    label, reason = classify(memorized_at(60_000), accuracy, bridge)
    assert label == "no_delay"
    assert "from step 40000, 0.7x t_mem=60000 (< 2x)" in reason and "from step 190000" in reason


def test_partial_plateau_below_one_half():  # both-hop half augmentation (C)
    accuracy = curve(lambda step: 0.47 if step >= 400_000 else 0.26)
    label, reason = classify(memorized_at(136_000), accuracy, curve(oscillating(0.05, 0.53)))
    assert label == "partial"
    assert "max 0.47" in reason and "plateau at 0.47-0.47 over the last 50% of steps" in reason


def test_partial_late_rise_to_a_middling_level_without_circuit():
    accuracy = curve(lambda step: 0.7 if step >= 500_000 else 0.0)
    label, reason = classify(memorized_at(100_000), accuracy, curve(lambda step: 0.1))
    assert label == "partial" and "never held >= 0.9 (max 0.70)" in reason


def test_not_generalized():
    label, reason = classify(memorized_at(100_000), curve(lambda step: 0.01), curve(lambda step: 0.002))
    assert label == "not_generalized"
    assert "max 0.01 through step 1600000" in reason and "t_mem=100000" in reason


def test_accuracy_alone_when_there_is_no_circuit_data():
    accuracy = curve(lambda step: 0.95 if step >= 500_000 else 0.0)
    label, reason = classify(memorized_at(100_000), accuracy, None)
    assert label == "real_grokking" and "5.0x t_mem=100000" in reason and "no circuit data" in reason
    assert classify(memorized_at(100_000), [], None) == ("not_generalized", "no test accuracy evaluated yet")


def test_a_split_with_no_items_is_not_classified_as_generalized():
    """NaN accuracy and NaN circuit signal at every validation (no OOD facts) reach no level."""
    nan = curve(lambda step: float("nan"))
    label, reason = classify(memorized_at(100_000), nan, nan, split="test_inferred_ood")
    assert (label, reason) == (
        "not_generalized",
        "test_inferred_ood has no items: classify another split (RunClassifier.split)",
    )
    label, reason = classify(memorized_at(100_000), curve(lambda step: 0.01), nan)
    assert label == "not_generalized" and "no circuit data" in reason


def test_thresholds_are_configurable():
    accuracy = curve(lambda step: 1.0 if step >= 150_000 else 0.0)  # 1.5x t_mem
    bridge = curve(lambda step: 1.0 if step >= 150_000 else 0.0)
    assert classify(memorized_at(100_000), accuracy, bridge)[0] == "no_delay"
    assert classify(memorized_at(100_000), accuracy, bridge, Thresholds(late_ratio=1.2))[0] == "real_grokking"
    with pytest.raises(ConfigError, match=r"classification.thresholds.high=1.5 must lie in \(0, 1\]"):
        Thresholds(high=1.5)
    with pytest.raises(ConfigError, match=r"thresholds.plateau=\[0.8, 0.3\] must be \[low, high\]"):
        Thresholds(plateau=(0.8, 0.3))


def test_probe_reads_the_board_and_publishes_label_reason_code():
    board = ResultsBoard()
    for step, value in curve(lambda step: 0.96 if step >= 680_000 else 0.0):
        board.publish(
            "val", step, {**train_splits(1.0 if step >= 80_000 else 0.5), "test_inferred_ood/acc": value}
        )
        board.publish("logit_lens", step, {"ood/circuit_signal": 0.3})
    module = SimpleNamespace(eval_net=SimpleNamespace(circuit_signal=Recursive.circuit_signal))
    trainer = SimpleNamespace(callbacks=[board])
    result = RunClassifier().compute(trainer, module)
    assert result["label"] == "fake_grokking" and result["code"] == LABELS.index("fake_grokking")
    assert result["reason"].startswith("test_inferred_ood accuracy held >= 0.5 from step 680000")
    probe = RunClassifier(split="test_inferred_iid", bridge_section="absent")  # a decoder run: no lens, IID
    assert probe.name == "classification"
    assert probe.compute(trainer, module)["label"] == "not_generalized"
