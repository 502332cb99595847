"""Knowledge graphs, splits, dataset directories and the data module."""

from grokkit.data.datamodule import TwoHopDataModule
from grokkit.data.splits import EVAL_SPLITS

__all__ = ["EVAL_SPLITS", "TwoHopDataModule"]
