import os

import numpy as np
import pytest
import torch

from grokkit.data.kg import generate_graph
from grokkit.data.splits import SplitSpec, build_splits

XDIST_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))


@pytest.fixture(autouse=True)
def one_thread_per_xdist_worker():
    """`make test` runs one worker per core: two threads each would oversubscribe. Set before every test, as
    a config a test parses (the default's ``threads: 2``, a mutated ``threads``) sets the process's count."""
    if XDIST_WORKER:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_graph():
    return generate_graph(60, 12, 6, np.random.default_rng(0))


def small_splits(graph, **spec):
    return build_splits(
        graph,
        SplitSpec(**{"phi": 3.0, "ood_fraction": 0.2, "eval_size": 1000, **spec}),
        np.random.default_rng(1),
    )
