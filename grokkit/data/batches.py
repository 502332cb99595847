"""Training batches drawn by step, so a resumed run draws exactly the batches an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import IterableDataset


class StepBatches(IterableDataset):
    """Endless training batches of indices, drawn without replacement within each epoch."""

    def __init__(self, n_items: int, batch_size: int, seed: int, start_step: Callable[[], int]) -> None:
        self.n_items, self.batch_size, self.seed, self.start_step = n_items, batch_size, seed, start_step
        self.steps_per_epoch = n_items // batch_size

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n_items, generator=generator)

    def __iter__(self) -> Iterator[torch.Tensor]:
        step = self.start_step()
        epoch, order = -1, torch.empty(0, dtype=torch.long)
        while True:
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                order = self.permutation(epoch)
            start = (step % self.steps_per_epoch) * self.batch_size
            yield order[start : start + self.batch_size]
            step += 1
