"""When did the run memorize, when did it generalize, and was that grokking?

Reads the accuracy curves the module publishes after every validation (board section ``val``) and finds
onsets with a *sustained* rule, so one lucky evaluation does not count: a level is reached at the first
step of the first run of ``consecutive`` evaluations that all hold it.

    t_mem          first step training accuracy >= memorized (sustained), where training accuracy is the
                   lowest accuracy of the in-distribution training splits (``memorized_splits``)
    t_gen[split][x] first step the split's accuracy >= x (sustained), x in thresholds
    delay = t_gen - t_mem, ratio = t_gen / t_mem; grokked: t_gen(grokked_at) exists and ratio >= min_ratio

A late rise is late relative to when the model fit its in-distribution training data: the atomic facts and
compositions it can fit by memorization (``id_atomic``, ``train_inferred``). The OOD atomic facts are left out
by default: they appear in training only as atomic facts, and some models keep them below 0.99 for a long
time (a recursive model held them at ~0.9), which would leave ``t_mem`` undefined and every later rise
"without delay".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info

from grokkit.errors import ConfigError
from grokkit.probes.base import Probe
from grokkit.ranges import check_arguments
from grokkit.train.board import ResultsBoard

Series = Sequence[tuple[int, float]]
MEMORIZED_SPLITS = ("id_atomic", "train_inferred")


def first_sustained(series: Series, threshold: float, consecutive: int) -> int | None:
    """The first step of the first ``consecutive`` evaluations in a row that are all >= ``threshold``; a NaN
    (the accuracy of a split with no items) holds no level."""
    start, streak = None, 0
    for step, value in sorted(dict(series).items()):  # by step; a step published twice keeps its last value
        if not value >= threshold:
            streak = 0
            continue
        if streak == 0:
            start = step
        streak += 1
        if streak == consecutive:
            return start
    return None


def training_curve(board: ResultsBoard, splits: Sequence[str]) -> list[tuple[int, float]]:
    """(step, lowest accuracy of ``splits``) at every validation that published all of them; a split with no
    items (NaN, e.g. ``train_inferred`` at phi 0) has nothing to memorize and is left out of the minimum."""
    history = board.history.get("val", [])
    return [
        (step, min((v for v in (values[f"{s}/acc"] for s in splits) if not math.isnan(v)), default=math.nan))
        for step, values in history
        if all(f"{s}/acc" in values for s in splits)
    ]


def level_key(threshold: float) -> str:
    """How a threshold is written in keys: 0.5 -> "0.5", 0.99 -> "0.99"."""
    return f"{threshold:g}"


class GrokkingOnset(Probe):
    """Memorization and generalization onsets, the grokking delay, and optionally stopping after grokking.

    Args:
        splits: Test splits whose generalization onsets are measured.
        thresholds: Accuracy levels whose first sustained crossing is reported as ``t_gen``.
        memorized: Training accuracy that counts as memorized (``t_mem``).
        memorized_splits: The training splits that must all hold ``memorized``.
        consecutive: Evaluations in a row a level must hold to count (1 takes the first crossing).
        grokked_at: The accuracy level whose onset decides ``grokked``.
        min_ratio: Grokked when t_gen(grokked_at) >= min_ratio * t_mem, i.e. generalization came well after
            memorization.
        stop_after_steps: Stop training this many steps after ``stop_split`` reached ``stop_threshold``
            (``None``: never stop).
        stop_split: The split that triggers the stop.
        stop_threshold: The accuracy level that triggers the stop.
    """

    stage = 1  # reads the accuracies published by the module

    def __init__(
        self,
        splits: tuple[str, ...] = ("test_inferred_iid", "test_inferred_ood"),
        thresholds: tuple[float, ...] = (0.5, 0.9, 0.99),
        memorized: float = 0.99,
        memorized_splits: tuple[str, ...] = MEMORIZED_SPLITS,
        consecutive: int = 3,
        grokked_at: float = 0.9,
        min_ratio: float = 2.0,
        stop_after_steps: int | None = None,
        stop_split: str = "test_inferred_iid",
        stop_threshold: float = 0.99,
        every_n_steps: int = 1,
        per_decade: int | None = None,
    ) -> None:
        super().__init__(every_n_steps=every_n_steps, per_decade=per_decade)
        check_arguments(self.name, type(self), locals())  # every number in its range (grokkit.ranges)
        self.splits, self.thresholds = tuple(splits), tuple(sorted(thresholds))
        if not memorized_splits:
            raise ConfigError("GrokkingOnset: memorized_splits must name at least one training split")
        self.memorized, self.memorized_splits = memorized, tuple(memorized_splits)
        self.consecutive = consecutive
        self.grokked_at, self.min_ratio = grokked_at, min_ratio
        self.stop_after_steps, self.stop_split = stop_after_steps, stop_split
        self.stop_threshold = stop_threshold
        self.rendered = ""  # the last onset table drawn, so TensorBoard gets a new one only when it changes

    @property
    def name(self) -> str:
        return "grokking"  # summary.json reads grokking.t_mem, grokking.t_gen.<split>.<threshold>

    def onset(self, board: ResultsBoard, split_key: str, threshold: float) -> int | None:
        return first_sustained(board.series("val", split_key), threshold, self.consecutive)

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        board = ResultsBoard.of(trainer)
        t_mem = first_sustained(
            training_curve(board, self.memorized_splits), self.memorized, self.consecutive
        )

        def delay(t: int | None) -> int | None:
            return None if t is None or t_mem is None else t - t_mem

        def ratio(t: int | None) -> float | None:
            return None if t is None or not t_mem else t / t_mem

        t_gen = {
            split: {level_key(x): self.onset(board, f"{split}/acc", x) for x in self.thresholds}
            for split in self.splits
        }
        grokked = {}
        for split in self.splits:
            grok_ratio = ratio(self.onset(board, f"{split}/acc", self.grokked_at))
            grokked[split] = grok_ratio is not None and grok_ratio >= self.min_ratio
        result: dict[str, Any] = {
            "t_mem": t_mem,
            "t_gen": t_gen,
            "delay": {split: {x: delay(t) for x, t in row.items()} for split, row in t_gen.items()},
            "ratio": {split: {x: ratio(t) for x, t in row.items()} for split, row in t_gen.items()},
            "grokked": grokked,
        }
        for name in ("t_gen", "delay", "ratio"):  # flat copies for TensorBoard, only where defined
            result |= {
                f"{name}/{split}/{x}": value
                for split, row in result[name].items()
                for x, value in row.items()
                if value is not None
            }
        result |= {f"grokked/{split}": int(value) for split, value in grokked.items()}
        if self.stop_after_steps is not None:
            result["stop_at"] = self.maybe_stop(trainer, board)
        return result

    def maybe_stop(self, trainer: L.Trainer, board: ResultsBoard) -> int | None:
        """Ask a fitting trainer to stop once the run is ``stop_after_steps`` past the trigger onset (the step is
        published outside a fit too: ``validate`` and ``analyze`` of a checkpoint stop nothing)."""
        t_stop = self.onset(board, f"{self.stop_split}/acc", self.stop_threshold)
        if t_stop is None:
            return None
        stop_at = t_stop + self.stop_after_steps
        if (
            trainer.state.fn == TrainerFn.FITTING
            and trainer.global_step >= stop_at
            and not trainer.should_stop
        ):
            rank_zero_info(
                f"grokking: stopping at step {trainer.global_step}, {trainer.global_step - t_stop} steps after "
                f"{self.stop_split} accuracy reached {self.stop_threshold:g} (step {t_stop})"
            )
            trainer.should_stop = True
        return stop_at

    def render(self, writer: Any, step: int, result: dict[str, Any]) -> None:
        """A markdown table of the onsets (TensorBoard's Text tab), drawn again only when an onset changes."""
        t_mem = "-" if result["t_mem"] is None else result["t_mem"]
        rows = [
            f"t_mem ({', '.join(self.memorized_splits)} >= {self.memorized:g}): {t_mem}",
            "",
            "| split | " + " | ".join(f"t_gen({level_key(x)})" for x in self.thresholds) + " | grokked |",
            "|---" * (len(self.thresholds) + 2) + "|",
        ]
        for split in self.splits:
            cells = []
            for x in map(level_key, self.thresholds):
                t, ratio = result["t_gen"][split][x], result["ratio"][split][x]
                cells.append("-" if t is None else f"{t}" if ratio is None else f"{t} ({ratio:.1f}x t_mem)")
            rows.append(
                f"| {split} | " + " | ".join(cells) + f" | {'yes' if result['grokked'][split] else 'no'} |"
            )
        text = "\n".join(rows)
        if text != self.rendered:
            writer.add_text("grokking/onset", text, step)
            self.rendered = text

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rendered": self.rendered}  # a resumed run redraws only on change

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.rendered = state_dict.get("rendered", "")
