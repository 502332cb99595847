"""Probes: callbacks that measure circuits and detect grokking while a run trains (or offline)."""

from grokkit.probes.base import Probe
from grokkit.probes.causal_tracing import CausalTracing
from grokkit.probes.circuit import CircuitDetector
from grokkit.probes.classifier import RunClassifier
from grokkit.probes.logit_lens import LogitLens
from grokkit.probes.onset import GrokkingOnset
from grokkit.train.board import ResultsBoard

__all__ = [
    "CausalTracing",
    "CircuitDetector",
    "GrokkingOnset",
    "LogitLens",
    "Probe",
    "ResultsBoard",
    "RunClassifier",
]
