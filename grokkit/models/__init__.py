"""Models of both studies behind one interface (:class:`TwoHopModel`)."""

from grokkit.models.base import IGNORE, CircuitSignal, Patch, TwoHopModel
from grokkit.models.decoder import Decoder
from grokkit.models.recursive import Recursive

__all__ = ["IGNORE", "CircuitSignal", "Decoder", "Patch", "Recursive", "TwoHopModel"]
