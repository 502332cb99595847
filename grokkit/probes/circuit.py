"""Has the generalization circuit formed? He et al.'s rule on the circuit signal's history, read from the board.

The circuit counts as formed once the model family's circuit signal stays at or above its level for a few
evaluations in a row; ``formed_step`` is the first of those evaluations. The signal is one the training
objective cannot produce by itself: Bridge Found outside the slot atomic items train (the recursive model;
chance is about 1/|E|), or Wang et al.'s strong causal effect of the bridge state S[mid, r1] on the answer
(decoders).
"""

from __future__ import annotations

from typing import Any

import lightning as L

from grokkit.probes.base import Probe
from grokkit.probes.onset import first_sustained
from grokkit.probes.signal import circuit_signal
from grokkit.ranges import check_arguments
from grokkit.train.board import ResultsBoard


class CircuitDetector(Probe):
    """Publishes ``formed`` (0/1), ``formed_step``, the latest ``signal`` value, its ``key`` and a ``reason``.

    Args:
        split: The queries whose circuit signal is watched where the signal is per split (the logit lens's, the
            recursive model's). A decoder's causal signal is traced on ``CausalTracing.split``, whatever this
            one (the decoder configs set ``test_inferred_iid``, which does not change the signal they read).
        section: The probe publishing the signal; ``None`` (with ``key`` ``None``): the model family's own
            signal (:attr:`grokkit.models.TwoHopModel.circuit_signal`): the causal strength of S[mid, r1]
            for a decoder, the logit lens's ``circuit_signal`` for the recursive model.
        key: The result to watch in that section (``None``: the model's; a key alone is a logit-lens key).
        threshold: The level that counts as formed (``None``: the signal's own; 0.95 for a configured one).
        consecutive: Evaluations in a row at or above it.
        min_causal_strength: Also require ``causal_tracing``'s ``r1_mid_strength`` to reach this once.
        every_n_steps: See :class:`Probe`.
        per_decade: See :class:`Probe`.
    """

    stage = 1

    def __init__(
        self,
        split: str = "test_inferred_ood",
        section: str | None = None,
        key: str | None = None,
        threshold: float | None = None,
        consecutive: int = 3,
        min_causal_strength: float | None = None,
        every_n_steps: int = 1,
        per_decade: int | None = None,
    ) -> None:
        super().__init__(every_n_steps=every_n_steps, per_decade=per_decade)
        check_arguments(self.name, type(self), locals())  # numbers in range, a two-hop split (grokkit.ranges)
        self.split, self.section, self.key = split, section, key
        self.threshold, self.consecutive = threshold, consecutive
        self.min_causal_strength = min_causal_strength

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        board = ResultsBoard.of(trainer)
        signal = circuit_signal(pl_module.eval_net, self.split, self.section, self.key, self.threshold)
        name, level = f"{signal.section} {signal.key}", signal.formed
        series = board.series(signal.section, signal.key)
        if not series:
            return {"formed": 0, "formed_step": None, "key": name, "reason": f"no {name} yet"}
        result: dict[str, Any] = {"signal": series[-1][1], "key": name}
        formed_step = first_sustained(series, level, self.consecutive)
        reason = f"{name} >= {level:g} for {self.consecutive} evaluations from step {formed_step}"
        if formed_step is None:
            reason = f"{name} has not stayed >= {level:g} for {self.consecutive} evaluations"
        elif self.min_causal_strength is not None:
            strength = board.series("causal_tracing", "r1_mid_strength")
            causal_step = first_sustained(strength, self.min_causal_strength, 1)
            if causal_step is None:
                formed_step = None
                reason = f"{name} formed, but causal_tracing r1_mid_strength has not reached {self.min_causal_strength}"
            else:  # both signatures: the circuit is formed when the later one appears
                formed_step = max(formed_step, causal_step)
                reason += f" and r1_mid_strength >= {self.min_causal_strength} from step {causal_step}"
        return {
            **result,
            "formed": int(formed_step is not None),
            "formed_step": formed_step,
            "reason": reason,
        }
