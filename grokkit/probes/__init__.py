"""Probes: callbacks that measure circuits and detect grokking while a run trains (or offline)."""

from grokkit.probes.base import Probe
from grokkit.probes.board import ResultsBoard
from grokkit.probes.causal_tracing import CausalTracing
from grokkit.probes.circuit import CircuitDetector
from grokkit.probes.logit_lens import LogitLens

__all__ = ["CausalTracing", "CircuitDetector", "LogitLens", "Probe", "ResultsBoard"]
