"""The range table covers every numeric constructor argument of grokkit's configurable classes."""

import collections.abc
import dataclasses
import math
import typing

import pytest
from jsonargparse import Namespace

from grokkit.data import TwoHopDataModule
from grokkit.errors import ConfigError
from grokkit.models import Decoder, Recursive
from grokkit.probes import CausalTracing, CircuitDetector, GrokkingOnset, LogitLens, RunClassifier
from grokkit.ranges import Range, check_ranges, ranges_of
from grokkit.train.checkpointing import TrajectoryCheckpoint
from grokkit.train.grokfast import Grokfast
from grokkit.train.module import GrokModule
from grokkit.train.schedule import SwitchHyperparameters

CLASSES = [
    TwoHopDataModule,
    GrokModule,
    Decoder,
    Recursive,
    SwitchHyperparameters,
    LogitLens,
    CausalTracing,
    CircuitDetector,
    GrokkingOnset,
    RunClassifier,
    TrajectoryCheckpoint,
    Grokfast,
]
LINKED = {"vocab_size", "item_len"}  # set from the data, not configured


def numeric_arguments(cls: type) -> set[str]:
    """Arguments typed int or float (or a tuple or optional of them); a dataclass's fields as ``arg.field``."""
    found = set()
    for name, hint in typing.get_type_hints(cls.__init__).items():
        if dataclasses.is_dataclass(hint):
            found |= {f"{name}.{key}" for key in numeric_fields(hint)}
        elif is_number_type(hint) and name not in LINKED:
            found.add(name)
    return found


def numeric_fields(cls: type) -> set[str]:
    hints = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if is_number_type(hints[f.name])}


def is_number_type(hint: object) -> bool:
    """int, float, or a union or tuple of them (a callable's argument types do not count)."""
    if typing.get_origin(hint) is collections.abc.Callable:
        return False
    return hint in (int, float) or any(is_number_type(arg) for arg in typing.get_args(hint))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_numeric_argument_has_a_range(cls):
    assert numeric_arguments(cls) - ranges_of(cls).keys() == set()


def test_a_range_refuses_nan_and_infinities_and_prints_itself():
    assert 0.5 in Range(0, 1) and 1 not in Range(0, 1, high_open=True)
    assert math.nan not in Range(-1, 1) and math.inf not in Range(0, math.inf)
    assert str(Range(0, 10, low_open=True)) == "(0, 10]"
    assert str(Range(1, 10**12, null="off")) == "[1, 1000000000000] (or null: off)"


def test_check_ranges_walks_class_paths_and_lists():
    config = Namespace(
        model=Namespace(
            lr=1e-3,
            betas=(0.9, 0.999),
            network=Namespace(class_path="grokkit.models.Decoder", init_args=Namespace(d_model=0)),
        ),
    )
    with pytest.raises(ConfigError, match=r"^model.network.init_args.d_model=0 must lie in \[1, 65536\]$"):
        check_ranges(config, {"model": GrokModule})
    config.model.network.init_args.d_model = 32
    config.model.betas = (0.9, True)  # a bool is not a number here: the parser judges its type
    check_ranges(config, {"model": GrokModule})
