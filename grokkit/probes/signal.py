"""Which curve is the circuit signal of a run: the model family's own, unless the config names another."""

from __future__ import annotations

from grokkit.models import CircuitSignal, TwoHopModel
from grokkit.probes.logit_lens import PREFIX

DEFAULT_FORMED = 0.95  # the level of a configured signal when none is given (He et al.'s Bridge Found rule)


def circuit_signal(
    model: TwoHopModel, split: str, section: str | None, key: str | None, formed: float | None
) -> CircuitSignal:
    """The model's :attr:`~TwoHopModel.circuit_signal` for ``split``'s queries, or the configured one.

    A configured ``key`` without a ``section`` is a logit-lens result; ``formed`` overrides the level.
    """
    if section is None and key is None:
        own = model.circuit_signal
        level = own.formed if formed is None else formed
        return CircuitSignal(own.section, own.key.format(split=PREFIX.get(split, split)), level)
    level = DEFAULT_FORMED if formed is None else formed
    return CircuitSignal(section or "logit_lens", key or "", level)
