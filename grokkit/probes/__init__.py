"""Probes: callbacks that measure circuits and detect grokking while a run trains (or offline)."""

from grokkit.probes.base import Probe
from grokkit.probes.board import ResultsBoard

__all__ = ["Probe", "ResultsBoard"]
