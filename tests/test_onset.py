"""GrokkingOnset on constructed accuracy curves: sustained onsets, delays, grokked, and stopping."""

import re
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader

from grokkit.errors import ConfigError
from grokkit.probes import GrokkingOnset, ResultsBoard
from grokkit.probes.onset import first_sustained

STEPS = range(100, 10_001, 100)


def board_with(train, iid, ood=lambda step: 0.0) -> ResultsBoard:
    """A results board holding the ``val`` section the module would publish at every step of STEPS."""
    board = ResultsBoard()
    for step in STEPS:
        board.publish(
            "val",
            step,
            {
                "id_atomic/acc": train(step),
                "train_inferred/acc": train(step),
                "test_inferred_iid/acc": iid(step),
                "test_inferred_ood/acc": ood(step),
            },
        )
    return board


def memorized_at_1000(step):
    return 1.0 if step >= 1000 else 0.5


def run_probe(
    probe: GrokkingOnset, board: ResultsBoard, step: int = 10_000, fn: TrainerFn = TrainerFn.FITTING
):
    trainer = SimpleNamespace(
        global_step=step, should_stop=False, callbacks=[board], state=SimpleNamespace(fn=fn)
    )
    return probe.compute(trainer, SimpleNamespace()), trainer


def test_step_shaped_curve():
    board = board_with(memorized_at_1000, lambda step: 1.0 if step >= 5000 else 0.0)
    result, _ = run_probe(GrokkingOnset(), board)
    assert result["t_mem"] == 1000
    assert result["t_gen"]["test_inferred_iid"] == {"0.5": 5000, "0.9": 5000, "0.99": 5000}
    assert result["delay"]["test_inferred_iid"]["0.9"] == 4000
    assert result["ratio"]["test_inferred_iid"]["0.9"] == 5.0
    assert result["grokked"] == {"test_inferred_iid": True, "test_inferred_ood": False}
    # flat numeric copies for TensorBoard, only where defined
    assert result["t_gen/test_inferred_iid/0.99"] == 5000 and result["grokked/test_inferred_iid"] == 1
    assert not any(key.startswith("t_gen/test_inferred_ood") for key in result)


def test_smooth_curve_crosses_each_threshold_in_turn():
    board = board_with(memorized_at_1000, lambda step: min(1.0, step / 8000))
    result, _ = run_probe(GrokkingOnset(), board)
    assert result["t_gen"]["test_inferred_iid"] == {"0.5": 4000, "0.9": 7200, "0.99": 8000}


def test_one_spike_does_not_count():
    spiky = {2000: 1.0, 3000: 0.95, 3100: 0.95}  # one spike, and a streak of two (< 3 consecutive)
    board = board_with(memorized_at_1000, lambda step: spiky.get(step, 1.0 if step >= 6000 else 0.0))
    result, _ = run_probe(GrokkingOnset(), board)
    assert result["t_gen"]["test_inferred_iid"]["0.9"] == 6000
    result, _ = run_probe(GrokkingOnset(consecutive=1), board)
    assert result["t_gen"]["test_inferred_iid"]["0.9"] == 2000


def test_never_generalizes():
    result, _ = run_probe(GrokkingOnset(), board_with(memorized_at_1000, lambda step: 0.01))
    assert result["t_mem"] == 1000
    assert result["t_gen"]["test_inferred_iid"] == {"0.5": None, "0.9": None, "0.99": None}
    assert result["delay"]["test_inferred_iid"]["0.5"] is None and not result["grokked"]["test_inferred_iid"]
    assert not any(key.startswith(("t_gen/", "delay/", "ratio/")) for key in result)


def test_generalizing_soon_after_memorizing_is_not_grokking():
    board = board_with(memorized_at_1000, lambda step: 1.0 if step >= 1500 else 0.0)
    result, _ = run_probe(GrokkingOnset(min_ratio=2.0), board)
    assert result["ratio"]["test_inferred_iid"]["0.9"] == 1.5 and not result["grokked"]["test_inferred_iid"]


def test_stop_after_steps_sets_should_stop():
    board = board_with(memorized_at_1000, lambda step: 1.0 if step >= 3000 else 0.0)
    probe = GrokkingOnset(stop_after_steps=500)
    result, trainer = run_probe(probe, board, step=3400)
    assert result["stop_at"] == 3500 and not trainer.should_stop
    result, trainer = run_probe(probe, board, step=3500)
    assert trainer.should_stop
    _, trainer = run_probe(GrokkingOnset(), board, step=10_000)  # no stop_after_steps: never stops
    assert not trainer.should_stop
    for offline in (TrainerFn.VALIDATING, TrainerFn.TESTING):  # validate and analyze of a checkpoint: no stop
        result, trainer = run_probe(probe, board, step=3500, fn=offline)
        assert result["stop_at"] == 3500 and not trainer.should_stop


def test_published_summary_and_onset_table():
    board = board_with(memorized_at_1000, lambda step: 1.0 if step >= 5000 else 0.0)
    probe = GrokkingOnset()
    result, _ = run_probe(probe, board)
    board.publish(probe.name, 10_000, result)
    summary = board.summary()["grokking"]
    assert summary["t_mem"] == 1000 and summary["t_gen"]["test_inferred_iid"]["0.9"] == 5000
    assert board.series("grokking", "t_gen/test_inferred_iid/0.9") == [(10_000, 5000.0)]

    texts = []
    writer = SimpleNamespace(add_text=lambda tag, text, step: texts.append((tag, text, step)))
    probe.render(writer, 10_000, result)
    probe.render(writer, 10_100, result)  # unchanged onsets: not drawn again
    assert len(texts) == 1 and texts[0][0] == "grokking/onset"
    assert (
        "t_mem (id_atomic, train_inferred >= 0.99): 1000" in texts[0][1]
        and "5000 (5.0x t_mem)" in texts[0][1]
    )


def test_first_sustained_orders_steps_and_keeps_the_last_value_of_a_step():
    assert first_sustained([(30, 1.0), (10, 1.0), (20, 1.0)], 0.9, 3) == 10
    assert first_sustained([(10, 1.0), (20, 1.0), (20, 0.0), (30, 1.0)], 0.9, 2) is None
    assert first_sustained([], 0.5, 1) is None


def test_a_split_with_no_items_reaches_no_level_and_is_left_out_of_memorization():
    """No OOD facts (``data.ood_fraction: 0``): the OOD accuracy is NaN at every validation, and no level
    holds for it, nor a stop after it; ``train_inferred`` empty (phi 0): memorized when ``id_atomic`` holds."""
    nan = float("nan")
    board = board_with(memorized_at_1000, lambda step: 1.0 if step >= 5000 else 0.0, ood=lambda step: nan)
    probe = GrokkingOnset(stop_after_steps=100, stop_split="test_inferred_ood")
    result, trainer = run_probe(probe, board)
    assert result["t_gen"]["test_inferred_ood"] == {"0.5": None, "0.9": None, "0.99": None}
    assert result["t_gen"]["test_inferred_iid"]["0.9"] == 5000 and not trainer.should_stop
    assert first_sustained([(10, nan), (20, 1.0), (30, 1.0)], 0.5, 2) == 20
    board = ResultsBoard()
    for step in STEPS:
        board.publish("val", step, {"train_inferred/acc": nan, "id_atomic/acc": 1.0 if step >= 800 else 0.3})
    both_orders = [("train_inferred", "id_atomic"), ("id_atomic", "train_inferred")]
    assert [run_probe(GrokkingOnset(memorized_splits=o), board)[0]["t_mem"] for o in both_orders] == [
        800,
        800,
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"splits": ("test_inferred_nope",)},
            "grokking.splits[0]='test_inferred_nope' must be one of id_atomic,",
        ),
        ({"thresholds": (0.5, 1.5)}, "grokking.thresholds[1]=1.5 must lie in (0, 1]"),
        ({"consecutive": 0}, "grokking.consecutive=0 must lie in [1, 1000000]"),
    ],
)
def test_bad_arguments_raise_config_error(arguments, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        GrokkingOnset(**arguments)


def test_memorized_when_the_in_distribution_training_splits_hold_not_the_lagging_ood_facts():
    """A model that keeps the OOD atomic facts at 0.9 has memorized once the ID training splits hold 0.99."""
    board = ResultsBoard()
    for step in STEPS:
        fit = 1.0 if step >= 2000 else 0.5
        board.publish("val", step, {"id_atomic/acc": fit, "train_inferred/acc": fit, "ood_atomic/acc": 0.9})
    assert run_probe(GrokkingOnset(), board)[0]["t_mem"] == 2000
    strict = GrokkingOnset(memorized_splits=("id_atomic", "ood_atomic", "train_inferred"))
    assert run_probe(strict, board)[0]["t_mem"] is None


class Counter(L.LightningModule):
    """Not grokkit's module: a parameter-free model whose logged accuracy is 1.0 from step 4 on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return (self.weight * batch.sum()) ** 2

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/id_atomic/acc", 1.0 if self.global_step >= 4 else 0.2)
        self.log("val/test_inferred_iid/acc", 1.0 if self.global_step >= 8 else 0.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_probes_find_the_board_through_the_trainer_with_any_module(tmp_path):
    loader = DataLoader(torch.ones(4, 1), batch_size=1)
    probe = GrokkingOnset(
        splits=("test_inferred_iid",), thresholds=(0.9,), consecutive=2, memorized_splits=("id_atomic",)
    )
    kwargs = dict(max_steps=12, val_check_interval=2, logger=False, enable_progress_bar=False)
    trainer = L.Trainer(callbacks=[ResultsBoard(), probe], default_root_dir=tmp_path, **kwargs)
    trainer.fit(Counter(), train_dataloaders=loader, val_dataloaders=loader)
    onsets = ResultsBoard.of(trainer).latest("grokking")
    assert onsets["t_mem"] == 4 and onsets["t_gen"]["test_inferred_iid"]["0.9"] == 8
    lonely = L.Trainer(callbacks=[GrokkingOnset()], default_root_dir=tmp_path / "lonely", **kwargs)
    with pytest.raises(ConfigError, match="no results board among trainer.callbacks"):
        lonely.fit(Counter(), loader, loader)
    assert lonely.global_step == 0 and not (tmp_path / "lonely").exists()  # refused before any step
