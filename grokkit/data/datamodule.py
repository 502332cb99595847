"""The two-hop composition task as a ``LightningDataModule``.

Batches are index tensors; ``on_after_batch_transfer`` gathers the token rows from tables that live on the
training device, so a training step moves 4 KB of indices and runs no per-sample Python. The training order
is a pure function of (seed, batch): the fit's batch ``s`` (one a step, or ``accumulate_grad_batches`` a step)
is slice ``s mod E`` of the permutation of epoch ``s // E``. A resumed run therefore sees exactly the batches
an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from grokkit.data import store
from grokkit.data.batches import StepBatches
from grokkit.data.files import read_triples
from grokkit.data.injection import INJECTION_SPLITS, Injection, graph_of, inject
from grokkit.data.kg import KnowledgeGraph, generate_graph, graph_from_triples
from grokkit.data.splits import EVAL_SPLITS, Splits, SplitSpec, build_splits
from grokkit.errors import ConfigError
from grokkit.lightning_private import training_batches_drawn
from grokkit.ranges import check_arguments
from grokkit.tokens import ITEM_LEN, N_SPECIAL


class TwoHopDataModule(L.LightningDataModule):
    """Knowledge graph, ID/OOD split, phi, data regime and the five evaluation splits.

    With ``injection`` the data are instead the fine-tuning data of the transfer experiment built on that
    dataset (:mod:`grokkit.data.injection`): replayed old data plus new facts, with the evaluation splits
    ``new_atomic``, ``new_old``, ``old_new`` and ``new_new`` after the five.

    Args:
        data_dir: Where dataset directories are cached (one per parameter set).
        seed: Fixes the graph, the splits, the regime's added items and the training order.
        n_entities: |E| of the generated graph.
        n_relations: |R| of the generated graph.
        out_degree: Relations per entity (each with one random tail).
        facts_file: A .jsonl or .tsv file of your own atomic facts, used instead of the generator.
        ood_fraction: Fraction of atomic facts that are OOD (trained alone, never inside a composition).
        phi: Training two-hop facts per ID atomic fact.
        test_iid_probability: Probability that an ID two-hop fact is held out for ``test_inferred_iid``.
        hop1_ratio: Data regime rho1: fraction of hop-1 OOD facts exposed as first hops.
        hop1_k: Data regime k1: compositions added per exposed hop-1 fact.
        hop2_ratio: Data regime rho2: fraction of hop-2 OOD facts exposed as second hops.
        hop2_k: Data regime k2: compositions added per exposed hop-2 fact.
        eval_size: Items per evaluation split (sampled once, fixed for the run).
        ood_atomic_repeats: Copies of each OOD atomic fact in the training set. No training composition
            contains an OOD fact, so under strong weight decay only its own item holds it; copies replay it.
        batch_size: Training batch size.
        eval_batch_size: Batch size of validation forwards.
        injection: Inject new facts into the dataset the other arguments describe (give them the source run's
            values, e.g. by stacking the run's ``config.yaml`` first).
    """

    def __init__(
        self,
        data_dir: str = "data",
        seed: int = 0,
        n_entities: int = 2000,
        n_relations: int = 200,
        out_degree: int = 20,
        facts_file: str | None = None,
        ood_fraction: float = 0.05,
        phi: float = 18.0,
        test_iid_probability: float = 0.005,
        hop1_ratio: float = 0.0,
        hop1_k: int = 0,
        hop2_ratio: float = 0.0,
        hop2_k: int = 0,
        eval_size: int = 3000,
        ood_atomic_repeats: int = 1,
        batch_size: int = 512,
        eval_batch_size: int = 4096,
        injection: Injection | None = None,
    ) -> None:
        super().__init__()
        arguments = locals()
        check_arguments("data", type(self), arguments)  # every argument in its range
        if facts_file is None and out_degree > n_relations:
            raise ConfigError(
                f"data.out_degree={out_degree} is larger than data.n_relations={n_relations}: an entity cannot have "
                "more distinct relations than exist; lower out_degree or raise n_relations",
                "data.out_degree",
                "data.n_relations",
            )
        self.data_dir, self.seed, self.facts_file = Path(data_dir), seed, facts_file
        self.graph_size = (n_entities, n_relations, out_degree)
        self.spec = SplitSpec(**{field.name: arguments[field.name] for field in fields(SplitSpec)})
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.injection = injection
        self.tables: dict[str, torch.Tensor] = {}

    # ----- what the model and probes need to know before setup -----
    @cached_property
    def _user_graph(self) -> KnowledgeGraph | None:
        if self.facts_file is None:
            return None
        return graph_from_triples(read_triples(path := Path(self.facts_file)), source=str(path))

    @property
    def vocab_size(self) -> int:
        """Closed vocabulary: ``<pad>``, ``</a>``, one token per entity and per relation."""
        if self._user_graph is not None:
            return self._user_graph.vocab_size
        return N_SPECIAL + self.graph_size[0] + self.graph_size[1]

    @property
    def item_len(self) -> int:
        return ITEM_LEN

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The evaluation splits, in the order of the validation data loaders."""
        return EVAL_SPLITS if self.injection is None else (*EVAL_SPLITS, *INJECTION_SPLITS)

    @cached_property
    def source_params(self) -> dict[str, Any]:
        """Everything that determines the (source) dataset's content; its digest names the cache directory."""
        source: dict[str, Any]
        if self.facts_file is None:
            source = dict(zip(("n_entities", "n_relations", "out_degree"), self.graph_size, strict=True))
        else:
            source = {"facts_file_sha256": store.file_sha256(Path(self.facts_file))}
        return {"seed": self.seed, **source, **self.spec.__dict__}

    @cached_property
    def params(self) -> dict[str, Any]:
        """The source parameters, and those of the injection if there is one."""
        if self.injection is None:
            return self.source_params
        return {**self.source_params, "injection": asdict(self.injection)}

    @property
    def source_dir(self) -> Path:
        name = "kg-" + ("file" if self.facts_file else "E{}-R{}-d{}".format(*self.graph_size))
        return self.data_dir / f"{name}-phi{self.spec.phi}-{store.params_digest(self.source_params)}"

    @property
    def dataset_dir(self) -> Path:
        if self.injection is None:
            return self.source_dir
        return self.source_dir.with_name(f"{self.source_dir.name}-inject-{store.params_digest(self.params)}")

    # ----- Lightning hooks -----
    def state_dict(self) -> dict[str, Any]:  # in every checkpoint: a resume is checked against it
        return {"params": self.params}

    def prepare_data(self) -> None:
        """Build the dataset directory once (the source one first), however many runs ask at once; verify it."""
        steps = [(self.source_dir, self.source_params, self.build)]
        if self.injection is not None:
            steps.append((self.dataset_dir, self.params, self.build_injection))
        for directory, params, build in steps:
            if not directory.exists():
                with store.build_lock(directory):
                    if not directory.exists():  # else another run built it while this one waited
                        build()
            store.read_manifest(directory, params)

    def draw(self) -> tuple[KnowledgeGraph, Splits]:
        """The graph and splits :meth:`build` writes, in memory only (a dry run's check that they can be drawn)."""
        rng = np.random.default_rng(self.seed)
        graph = self._user_graph or generate_graph(*self.graph_size, rng)
        return graph, build_splits(graph, self.spec, rng)

    def build(self) -> None:
        """Draw the graph and splits and write the (source) dataset directory (holding the lock)."""
        store.remove_leftovers(self.source_dir)
        rank_zero_info(f"grokkit: building dataset {self.source_dir}")
        graph, splits = self.draw()
        names = {"entities": graph.entity_names, "relations": graph.relation_names}
        store.write_dataset(self.source_dir, splits, self.source_params, names)

    def build_injection(self) -> None:
        """Inject new facts into the source dataset and write the fine-tuning one (holding the lock)."""
        store.remove_leftovers(self.dataset_dir)
        rank_zero_info(f"grokkit: building dataset {self.dataset_dir}")
        manifest = store.read_manifest(self.source_dir, self.source_params)
        source = store.load_tensors(self.source_dir, manifest)
        rng = np.random.default_rng([self.seed, 1])  # the injection's own stream
        splits = inject(graph_of(source["facts"], manifest["vocab"]), source, self.injection, rng)
        store.write_dataset(self.dataset_dir, splits, self.params, manifest["vocab"])

    def setup(self, stage: str | None = None) -> None:
        if self.tables:
            return
        self.prepare_data()  # idempotent; makes setup() usable outside a Trainer
        manifest = store.read_manifest(self.dataset_dir, self.params)
        self.manifest = manifest
        self.tables = store.load_tensors(self.dataset_dir, manifest)
        if stage in (None, "fit"):
            self.check_batch_size()

    def check_batch_size(self) -> int:
        """The number of training items, if a batch fits in them (a batch never repeats an item)."""
        n_train = len(self.tables["train"])
        if n_train < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} exceeds the {n_train} training items; lower it",
                "data.batch_size",
            )
        return n_train

    def split_items(self, split: str) -> torch.Tensor:
        """Token items (N, 5) of ``train`` or an evaluation split, on the device they were last moved to."""
        return self.tables["train" if split == "train" else f"eval/{split}"]

    def split_bridges(self, split: str) -> torch.Tensor:
        return self.tables["train_bridge" if split == "train" else f"eval_bridge/{split}"]

    def train_dataloader(self) -> DataLoader:
        n_train = self.check_batch_size()
        trainer = self.trainer  # a resumed fit draws on from the batches the interrupted one took
        step = (lambda: 0) if trainer is None else (lambda: training_batches_drawn(trainer))
        # Pinned on a GPU, so each step's index copy is asynchronous: a copy from pageable memory can wait
        # for the device to drain, a host sync every step.
        pin = trainer is not None and trainer.strategy.root_device.type == "cuda"
        batches = StepBatches(n_train, self.batch_size, self.seed, step)
        return DataLoader(batches, batch_size=None, pin_memory=pin)

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(
                list(torch.arange(len(self.split_items(split))).split(self.eval_batch_size)), batch_size=None
            )
            for split in self.eval_splits
        ]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()

    def on_after_batch_transfer(self, batch: torch.Tensor, dataloader_idx: int) -> torch.Tensor:
        """Turn a batch of indices into token items, gathered on the batch's device."""
        split = "train" if self.trainer.training else self.eval_splits[dataloader_idx]
        if self.split_items(split).device != batch.device:
            self.tables = {name: table.to(batch.device) for name, table in self.tables.items()}
        return self.split_items(split)[batch]
