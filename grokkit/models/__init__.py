"""Models of both studies behind one interface (:class:`TwoHopModel`)."""

from grokkit.models.base import IGNORE, Patch, TwoHopModel
from grokkit.models.decoder import Decoder
from grokkit.models.recursive import Recursive

__all__ = ["IGNORE", "Decoder", "Patch", "Recursive", "TwoHopModel"]
