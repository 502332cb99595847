"""Has the generalization circuit formed? He et al.'s rule on the logit lens history, read from the board.

The circuit counts as formed once the circuit signal (Bridge Found where the objective cannot put the bridge)
stays at or above a threshold for a few evaluations in a row (chance is about 1/|E|); ``formed_step`` is the
first of those evaluations. For decoders one may also ask
for Wang et al.'s signature, a strong causal effect of the bridge state S[mid, r1] on the answer.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from grokkit.errors import ConfigError
from grokkit.probes.base import Probe
from grokkit.probes.onset import first_sustained


class CircuitDetector(Probe):
    """Publishes ``formed`` (0/1), ``formed_step``, the latest ``bridge_found`` and a ``reason``.

    Args:
        key: The ``logit_lens`` result to watch: by default ``circuit_signal`` on the OOD queries, Bridge
            Found where the training objective cannot put the bridge by itself (the model's own positions;
            see :mod:`grokkit.probes.logit_lens`). On a decoder, which does not compose OOD facts, watch
            ``iid/circuit_signal``.
        threshold: Bridge Found level that counts as formed.
        consecutive: Evaluations in a row at or above it.
        min_causal_strength: Also require ``causal_tracing``'s ``r1_mid_strength`` to reach this once.
        every_n_steps: See :class:`Probe`.
        per_decade: See :class:`Probe`.
    """

    stage = 1

    def __init__(
        self,
        key: str = "ood/circuit_signal",
        threshold: float = 0.95,
        consecutive: int = 3,
        min_causal_strength: float | None = None,
        every_n_steps: int = 1,
        per_decade: int | None = None,
    ) -> None:
        super().__init__(every_n_steps=every_n_steps, per_decade=per_decade)
        if consecutive < 1:
            raise ConfigError(f"circuit_detector.consecutive={consecutive} must be at least 1")
        self.key, self.threshold, self.consecutive = key, threshold, consecutive
        self.min_causal_strength = min_causal_strength

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        board = pl_module.board
        bridge = board.series("logit_lens", self.key)
        if not bridge:
            return {"formed": 0, "formed_step": None, "reason": f"no logit_lens result {self.key!r} yet"}
        result: dict[str, Any] = {"bridge_found": bridge[-1][1]}
        formed_step = first_sustained(bridge, self.threshold, self.consecutive)
        reason = f"{self.key} >= {self.threshold} for {self.consecutive} evaluations from step {formed_step}"
        if formed_step is None:
            reason = f"{self.key} has not stayed >= {self.threshold} for {self.consecutive} evaluations"
        elif self.min_causal_strength is not None:
            strength = board.series("causal_tracing", "r1_mid_strength")
            causal_step = first_sustained(strength, self.min_causal_strength, 1)
            if causal_step is None:
                formed_step = None
                reason = f"bridge found, but causal_tracing r1_mid_strength has not reached {self.min_causal_strength}"
            else:  # both signatures: the circuit is formed when the later one appears
                formed_step = max(formed_step, causal_step)
                reason += f" and r1_mid_strength >= {self.min_causal_strength} from step {causal_step}"
        return {
            **result,
            "formed": int(formed_step is not None),
            "formed_step": formed_step,
            "reason": reason,
        }
