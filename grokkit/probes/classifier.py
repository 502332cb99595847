"""Real or fake grokking? One label per run, from its accuracy curve and its circuit curve (He et al.).

He et al. found that high accuracy on unseen compositions and the generalization circuit can appear
independently of each other, depending on the data regime. This probe puts a run in one of six classes,
from the test accuracy of one split (``val`` board section) and the circuit signal of the model family
(Bridge Found outside the atomically trained slot for the recursive model, the causal strength of S[mid, r1]
for a decoder; see :mod:`grokkit.probes.signal`), every level reached only when held for ``consecutive`` evaluations:

    t_mem     training accuracy >= memorized        t_rise  accuracy >= rise     t_high  accuracy >= high
    t_formed  circuit signal >= formed (circuit formed)
    late      t_rise >= late_ratio * t_mem

    accuracy rose (t_rise):
        not late ............................................................. no_delay
        late, circuit formed long before (t_formed <= t_rise / late_ratio) ... circuit_without_accuracy
        late, circuit formed with it (t_formed <= together_ratio * t_rise)
              or signal median since the rise >= fake_bridge_max ............. real_grokking
        late, to >= high, circuit low or unstable ............................ fake_grokking
        late, below high, no circuit ......................................... partial
    accuracy never rose:
        circuit formed, and the run went on to late_ratio * t_formed ......... circuit_without_accuracy
        accuracy stuck in the plateau band over the last plateau_window ...... partial
        otherwise ............................................................ not_generalized

Without a circuit curve (no probe has published the signal: no causal tracing for a decoder, no logit lens
for the recursive model), a late rise counts as real grokking and the reason says that real and fake
grokking could not be told apart.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any

import lightning as L

from grokkit.errors import ConfigError
from grokkit.probes.base import Probe
from grokkit.probes.onset import MEMORIZED_SPLITS, Series, first_sustained, training_curve
from grokkit.probes.signal import DEFAULT_FORMED, circuit_signal
from grokkit.ranges import check_arguments
from grokkit.train.board import ResultsBoard

LABELS = (
    "not_generalized",
    "partial",
    "no_delay",
    "circuit_without_accuracy",
    "fake_grokking",
    "real_grokking",
)


@dataclass(frozen=True)
class Thresholds:
    """Every number the classification uses (defaults: He et al.'s curves, spec section 4)."""

    memorized: float = 0.99  # training accuracy that counts as memorized (t_mem)
    consecutive: int = 3  # evaluations in a row a level must hold to count
    rise: float = 0.5  # accuracy whose first sustained crossing is "the rise" (t_rise)
    high: float = 0.9  # fake grokking rises to at least this accuracy
    formed: float | None = None  # circuit signal that counts as formed (t_formed); None: the signal's own
    fake_bridge_max: float = 0.8  # fake grokking: the signal's median since the rise stays below this
    late_ratio: float = (
        2.0  # late: t_rise >= late_ratio * t_mem; circuit long before: t_formed <= t_rise / this
    )
    together_ratio: float = 1.25  # circuit "before or with" the rise: t_formed <= together_ratio * t_rise
    plateau: tuple[float, float] = (0.25, 0.75)  # partial: accuracy stuck inside this band ...
    plateau_window: float = 0.5  # ... over this last fraction of the run's steps

    def __post_init__(self) -> None:
        check_arguments("classification.thresholds", Thresholds, vars(self))  # grokkit.ranges
        if self.plateau[0] > self.plateau[1]:
            raise ConfigError(f"classification.thresholds.plateau={list(self.plateau)} must be [low, high]")


def classify(
    train: Series, accuracy: Series, bridge: Series | None, t: Thresholds = Thresholds(), split: str = "test"
) -> tuple[str, str]:
    """Label a run from (step, value) curves of training accuracy, test accuracy and the circuit signal.

    Returns the label (one of ``LABELS``) and one sentence with the numbers that decided it.
    ``bridge`` is ``None`` (or empty) when no circuit was measured; its steps need not match the others.
    ``split`` names the accuracy in the reason.
    """
    if not accuracy:
        return "not_generalized", f"no {split} accuracy evaluated yet"
    accuracy = [(step, value) for step, value in accuracy if not math.isnan(value)]
    if not accuracy:  # NaN at every validation: the accuracy of a split with no items
        return "not_generalized", f"{split} has no items: classify another split (RunClassifier.split)"
    bridge = [(step, value) for step, value in bridge or [] if not math.isnan(value)]  # ditto
    k = t.consecutive
    if t.formed is None:
        t = replace(t, formed=DEFAULT_FORMED)
    t_mem = first_sustained(train, t.memorized, k)
    t_rise = first_sustained(accuracy, t.rise, k)
    t_high = first_sustained(accuracy, t.high, k)
    t_formed = first_sustained(bridge, t.formed, k) if bridge else None
    last_step, peak = max(step for step, _ in accuracy), max(value for _, value in accuracy)
    mem = f"t_mem={t_mem}" if t_mem is not None else f"training accuracy never held >= {t.memorized:g}"
    if t_formed is not None:
        bridge_state = f"held >= {t.formed:g} from step {t_formed}"
    else:
        bridge_state = f"never held >= {t.formed:g}" + (
            f" (max {max(v for _, v in bridge):.2f})" if bridge else ""
        )
    circuit = (
        f"circuit signal {bridge_state}"
        if bridge
        else "no circuit data (no probe has published the circuit signal: real and fake grokking look alike)"
    )

    if t_rise is not None:
        rose = f"{split} accuracy held >= {t.rise:g} from step {t_rise}"
        if t_mem is None:
            return "no_delay", f"{rose}, while {mem}: no grokking delay; {circuit}"
        ratio = t_rise / max(t_mem, 1)
        if ratio < t.late_ratio:
            return (
                "no_delay",
                f"{rose}, {ratio:.1f}x {mem} (< {t.late_ratio:g}x): no grokking delay; {circuit}",
            )
        rose += f", {ratio:.1f}x {mem} (late)"
        if not bridge:
            return "real_grokking", f"{rose}; {circuit}"
        if t_formed is not None and t_formed * t.late_ratio <= t_rise:
            lag = t_rise / max(t_formed, 1)
            return "circuit_without_accuracy", f"{circuit}, but {rose}, {lag:.1f}x after the circuit"
        since = [v for s, v in bridge if s >= t_rise] or [v for _, v in bridge[-k:]]
        median = statistics.median(since)
        if t_formed is not None and t_formed <= t.together_ratio * t_rise:
            return "real_grokking", f"{rose}; {circuit}, before or with the rise"
        if median >= t.fake_bridge_max:
            return (
                "real_grokking",
                f"{rose}; circuit signal median {median:.2f} >= {t.fake_bridge_max:g} since the rise",
            )
        low = f"circuit signal median {median:.2f} < {t.fake_bridge_max:g} since the rise and {bridge_state}"
        if t_high is not None:
            return "fake_grokking", f"{rose} and >= {t.high:g} from step {t_high}, while {low}"
        return "partial", f"{rose} but never held >= {t.high:g} (max {peak:.2f}), and {low}"

    never = f"{split} accuracy never held >= {t.rise:g} (max {peak:.2f} through step {last_step})"
    if t_formed is not None and last_step >= t.late_ratio * t_formed:
        return (
            "circuit_without_accuracy",
            f"{circuit}, but {never}, {last_step / max(t_formed, 1):.1f}x later",
        )
    window = [v for s, v in accuracy if s >= (1 - t.plateau_window) * last_step]
    low, high = t.plateau
    if len(window) >= k and all(low <= v <= high for v in window):
        span = f"{min(window):.2f}-{max(window):.2f}"
        return (
            "partial",
            f"{never}: plateau at {span} over the last {t.plateau_window:.0%} of steps; {circuit}",
        )
    return "not_generalized", f"{never}; {mem}; {circuit}"


class RunClassifier(Probe):
    """Labels the run at every validation: real or fake grokking, circuit without accuracy, and so on.

    Args:
        split: The accuracy to classify (``test_inferred_iid`` for a decoder, which does not do OOD).
        bridge_section: Board section holding the circuit curve; with ``bridge_key`` ``None``: the model
            family's own signal (:attr:`grokkit.models.TwoHopModel.circuit_signal`): for ``split``'s queries
            where it is per split (the recursive model's logit lens), on ``CausalTracing.split`` for a decoder.
        bridge_key: The circuit curve in that section (a key alone is a logit-lens key).
        memorized_splits: Training splits whose lowest accuracy is the training accuracy (``t_mem``).
        thresholds: The levels and ratios of the classification (see :class:`Thresholds`).
    """

    stage = 2  # reads the accuracies and the logit lens, after both were published

    def __init__(
        self,
        split: str = "test_inferred_ood",
        bridge_section: str | None = None,
        bridge_key: str | None = None,
        memorized_splits: tuple[str, ...] = MEMORIZED_SPLITS,
        thresholds: Thresholds = Thresholds(),
        every_n_steps: int = 1,
        per_decade: int | None = None,
    ) -> None:
        super().__init__(every_n_steps=every_n_steps, per_decade=per_decade)
        check_arguments(self.name, type(self), locals())  # evaluated splits (grokkit.ranges)
        self.split, self.bridge_section, self.bridge_key = split, bridge_section, bridge_key
        self.memorized_splits = tuple(memorized_splits)
        self.thresholds = thresholds

    @property
    def name(self) -> str:
        return "classification"

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        board = ResultsBoard.of(trainer)
        signal = circuit_signal(
            pl_module.eval_net, self.split, self.bridge_section, self.bridge_key, self.thresholds.formed
        )
        label, reason = classify(
            training_curve(board, self.memorized_splits),
            board.series("val", f"{self.split}/acc"),
            board.series(signal.section, signal.key),
            replace(self.thresholds, formed=signal.formed),
            self.split,
        )
        key = f"{signal.section} {signal.key}"
        return {"label": label, "reason": reason, "code": LABELS.index(label), "signal": key}
