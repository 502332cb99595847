"""Knowledge graphs, their two-hop facts, and both as token items (the splits are :mod:`grokkit.data.splits`).

Follows Wang et al. 2024 ("Grokked Transformers are Implicit Reasoners") for the graph. Everything is
vectorized numpy driven by one seeded generator, so the paper-scale graph (40k atomic, 800k two-hop facts)
builds in about a second.

Token layout of every item (5 tokens): atomic ``h r t </a> <pad>``, two-hop ``h r1 r2 t </a>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grokkit.errors import ConfigError
from grokkit.tokens import EOS, ITEM_LEN, N_SPECIAL, PAD


@dataclass
class KnowledgeGraph:
    """Atomic facts ``(head, relation, tail)`` sorted by head; ``(head, relation)`` is a function."""

    n_entities: int
    n_relations: int
    heads: np.ndarray
    relations: np.ndarray
    tails: np.ndarray
    entity_names: list[str]
    relation_names: list[str]

    @property
    def n_facts(self) -> int:
        return len(self.heads)

    def entity_token(self, entity: np.ndarray) -> np.ndarray:
        return entity + N_SPECIAL

    def relation_token(self, relation: np.ndarray) -> np.ndarray:
        return relation + N_SPECIAL + self.n_entities

    @property
    def vocab_size(self) -> int:
        return N_SPECIAL + self.n_entities + self.n_relations

    def out_facts(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR index of each entity's out-facts: (start offset, count) per entity."""
        counts = np.bincount(self.heads, minlength=self.n_entities)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return starts, counts


def generate_graph(
    n_entities: int, n_relations: int, out_degree: int, rng: np.random.Generator
) -> KnowledgeGraph:
    """Every entity gets ``out_degree`` distinct relations, each with a uniformly random tail."""
    relations = np.argsort(rng.random((n_entities, n_relations)), axis=1)[:, :out_degree]
    tails = rng.integers(0, n_entities, size=(n_entities, out_degree))
    heads = np.repeat(np.arange(n_entities), out_degree)
    return KnowledgeGraph(
        n_entities=n_entities,
        n_relations=n_relations,
        heads=heads,
        relations=relations.reshape(-1),
        tails=tails.reshape(-1),
        entity_names=[f"<e_{i}>" for i in range(n_entities)],
        relation_names=[f"<r_{j}>" for j in range(n_relations)],
    )


def graph_from_triples(triples: list[tuple[str, str, str]], source: str) -> KnowledgeGraph:
    """A user's facts (names as strings). ``source`` names the file in error messages."""
    entity_names = sorted({h for h, _, _ in triples} | {t for _, _, t in triples})
    relation_names = sorted({r for _, r, _ in triples})
    entity_id = {name: i for i, name in enumerate(entity_names)}
    relation_id = {name: i for i, name in enumerate(relation_names)}
    tail_of: dict[tuple[str, str], str] = {}
    for line, (h, r, t) in enumerate(triples, start=1):
        if tail_of.setdefault((h, r), t) != t:
            raise ConfigError(
                f"{source}: fact {line} ({h}, {r}, {t}) conflicts with ({h}, {r}, {tail_of[(h, r)]}): "
                "each (head, relation) must have exactly one tail; remove one of them"
            )
    keys = sorted(tail_of)
    heads = np.array([entity_id[h] for h, _ in keys], dtype=np.int64)
    order = np.argsort(heads, kind="stable")
    return KnowledgeGraph(
        n_entities=len(entity_names),
        n_relations=len(relation_names),
        heads=heads[order],
        relations=np.array([relation_id[r] for _, r in keys], dtype=np.int64)[order],
        tails=np.array([entity_id[tail_of[k]] for k in keys], dtype=np.int64)[order],
        entity_names=entity_names,
        relation_names=relation_names,
    )


@dataclass
class TwoHop:
    """All two-hop facts as pairs of atomic-fact indices: ``(f1, f2)`` with ``tail(f1) == head(f2)``."""

    first: np.ndarray
    second: np.ndarray


def enumerate_two_hop(kg: KnowledgeGraph) -> TwoHop:
    starts, counts = kg.out_facts()
    n_continuations = counts[kg.tails]
    first = np.repeat(np.arange(kg.n_facts), n_continuations)
    offset_in_group = np.arange(len(first)) - np.repeat(
        np.cumsum(n_continuations) - n_continuations, n_continuations
    )
    second = starts[kg.tails[first]] + offset_in_group
    return TwoHop(first=first, second=second)


def atomic_items(kg: KnowledgeGraph, facts: np.ndarray) -> np.ndarray:
    items = np.full((len(facts), ITEM_LEN), PAD, dtype=np.int64)
    items[:, 0] = kg.entity_token(kg.heads[facts])
    items[:, 1] = kg.relation_token(kg.relations[facts])
    items[:, 2] = kg.entity_token(kg.tails[facts])
    items[:, 3] = EOS
    return items


def two_hop_items(kg: KnowledgeGraph, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    items = np.empty((len(first), ITEM_LEN), dtype=np.int64)
    items[:, 0] = kg.entity_token(kg.heads[first])
    items[:, 1] = kg.relation_token(kg.relations[first])
    items[:, 2] = kg.relation_token(kg.relations[second])
    items[:, 3] = kg.entity_token(kg.tails[second])
    items[:, 4] = EOS
    return items


def query_keys(items: np.ndarray) -> np.ndarray:
    """One integer per (h, r1, r2) query (atomic items have r2 = PAD): used for disjointness checks."""
    if len(items) and items[:, :3].max() >= 1 << 21:  # three token ids packed into one int64, 21 bits each
        raise ConfigError(
            f"data.facts_file: the graph has {int(items[:, :3].max()) + 1} or more tokens, grokkit supports at "
            f"most {1 << 21} (entities + relations + 2); use a graph with fewer names"
        )
    return (items[:, 0] * (1 << 42)) + (items[:, 1] * (1 << 21)) + items[:, 2]
