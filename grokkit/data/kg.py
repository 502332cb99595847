"""Knowledge graphs, two-hop facts and the train/evaluation splits of the composition task.

Follows Wang et al. 2024 ("Grokked Transformers are Implicit Reasoners") for the graph, the fact-level
ID/OOD split and the ratio phi, and He et al. 2026 ("Is Grokking Worthwhile?") for the data regimes that
expose OOD facts inside training compositions. Everything is vectorized numpy driven by one seeded
generator, so the paper-scale graph (40k atomic, 800k two-hop facts) builds in about a second.

Token layout of every item (5 tokens): atomic ``h r t </a> <pad>``, two-hop ``h r1 r2 t </a>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grokkit.errors import ConfigError

PAD, EOS = 0, 1
N_SPECIAL = 2
ITEM_LEN = 5
EVAL_SPLITS = ("id_atomic", "ood_atomic", "train_inferred", "test_inferred_iid", "test_inferred_ood")


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
    return (items[:, 0] * (1 << 42)) + (items[:, 1] * (1 << 21)) + items[:, 2]


@dataclass(frozen=True)
class SplitSpec:
    """The numbers that turn a graph into training and evaluation data (spec section 1)."""

    ood_fraction: float = 0.05
    phi: float = 18.0
    test_iid_probability: float = 0.005
    hop1_ratio: float = 0.0
    hop1_k: int = 0
    hop2_ratio: float = 0.0
    hop2_k: int = 0
    eval_size: int = 3000


@dataclass
class Splits:
    """Token items (N, 5) per split, the bridge entity token of each two-hop item, and the fact table."""

    train: np.ndarray
    train_bridge: np.ndarray
    evals: dict[str, np.ndarray]
    eval_bridges: dict[str, np.ndarray]
    facts: np.ndarray  # (F, 3) token ids of every atomic fact: head, relation, tail
    fact_is_ood: np.ndarray  # (F,) bool
    counts: dict[str, int]


def _pick_up_to_k_per_group(groups: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask keeping a uniformly random subset of at most ``k`` members of each group."""
    if len(groups) == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((rng.random(len(groups)), groups))
    sorted_groups = groups[order]
    group_start = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - group_start
    return rank < k


def _inject(
    anchors: np.ndarray,
    ratio: float,
    k: int,
    candidates: np.ndarray,
    candidate_anchor: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pick round(ratio x |anchors|) anchor facts and keep up to k candidate compositions of each.

    ``candidates`` are two-hop indices and ``candidate_anchor`` the anchor fact each one contains.
    """
    n_chosen = round(ratio * len(anchors))
    if n_chosen == 0 or k == 0:
        return np.zeros(0, dtype=np.int64)
    chosen = np.isin(candidate_anchor, rng.choice(anchors, size=n_chosen, replace=False))
    return candidates[chosen][_pick_up_to_k_per_group(candidate_anchor[chosen], k, rng)]


def build_splits(kg: KnowledgeGraph, spec: SplitSpec, rng: np.random.Generator) -> Splits:
    """The fact-level ID/OOD split, phi sampling, the data regime, and the five evaluation splits."""
    n_ood = round(spec.ood_fraction * kg.n_facts)
    fact_is_ood = np.zeros(kg.n_facts, dtype=bool)
    fact_is_ood[rng.choice(kg.n_facts, size=n_ood, replace=False)] = True
    id_facts, ood_facts = np.flatnonzero(~fact_is_ood), np.flatnonzero(fact_is_ood)

    two_hop = enumerate_two_hop(kg)
    first_ood, second_ood = fact_is_ood[two_hop.first], fact_is_ood[two_hop.second]
    both_id = np.flatnonzero(~first_ood & ~second_ood)
    both_ood = np.flatnonzero(first_ood & second_ood)
    to_test = rng.random(len(both_id)) < spec.test_iid_probability
    test_iid, pool = both_id[to_test], both_id[~to_test]

    n_train_inferred = round(spec.phi * len(id_facts))
    if n_train_inferred > len(pool):
        raise ConfigError(
            f"data.phi={spec.phi} asks for {n_train_inferred} training two-hop facts but only {len(pool)} "
            f"ID two-hop facts exist (max phi {len(pool) / max(len(id_facts), 1):.2f}); lower data.phi or "
            "raise data.out_degree"
        )
    train_inferred = rng.choice(pool, size=n_train_inferred, replace=False)

    # Data regimes [H]: expose OOD facts of the OOD test queries as hop 1 or hop 2 of new compositions.
    exactly_one_ood = first_ood ^ second_ood
    hop1_candidates = np.flatnonzero(exactly_one_ood & first_ood)  # OOD first hop, ID second hop
    hop2_candidates = np.flatnonzero(exactly_one_ood & second_ood)  # ID first hop, OOD second hop
    added_hop1 = _inject(
        np.unique(two_hop.first[both_ood]), spec.hop1_ratio, spec.hop1_k,
        hop1_candidates, two_hop.first[hop1_candidates], rng,
    )  # fmt: skip
    added_hop2 = _inject(
        np.unique(two_hop.second[both_ood]), spec.hop2_ratio, spec.hop2_k,
        hop2_candidates, two_hop.second[hop2_candidates], rng,
    )  # fmt: skip
    added = np.setdiff1d(np.concatenate([added_hop1, added_hop2]), train_inferred)

    train_pairs = np.concatenate([train_inferred, added])
    train = np.concatenate(
        [
            atomic_items(kg, np.arange(kg.n_facts)),
            two_hop_items(kg, two_hop.first[train_pairs], two_hop.second[train_pairs]),
        ]
    )
    train_bridge = np.concatenate(
        [np.full(kg.n_facts, -1), kg.entity_token(kg.tails[two_hop.first[train_pairs]])]
    )

    def sample(indices: np.ndarray) -> np.ndarray:
        return (
            indices
            if len(indices) <= spec.eval_size
            else np.sort(rng.choice(indices, spec.eval_size, replace=False))
        )

    evals: dict[str, np.ndarray] = {}
    eval_bridges: dict[str, np.ndarray] = {}
    for name, facts in (("id_atomic", sample(id_facts)), ("ood_atomic", sample(ood_facts))):
        evals[name] = atomic_items(kg, facts)
        eval_bridges[name] = np.full(len(facts), -1)
    for name, pairs in (
        ("train_inferred", sample(train_inferred)),
        ("test_inferred_iid", sample(test_iid)),
        ("test_inferred_ood", sample(both_ood)),
    ):
        evals[name] = two_hop_items(kg, two_hop.first[pairs], two_hop.second[pairs])
        eval_bridges[name] = kg.entity_token(kg.tails[two_hop.first[pairs]])

    counts = {
        "atomic": kg.n_facts,
        "atomic_id": len(id_facts),
        "atomic_ood": len(ood_facts),
        "two_hop": len(two_hop.first),
        "two_hop_pool": len(pool),
        "test_inferred_iid_all": len(test_iid),
        "test_inferred_ood_all": len(both_ood),
        "train_inferred": n_train_inferred,
        "added_hop1": len(np.setdiff1d(added_hop1, train_inferred)),
        "added_hop2": len(np.setdiff1d(added_hop2, train_inferred)),
        "train": len(train),
        **{f"eval_{name}": len(items) for name, items in evals.items()},
    }
    facts = np.stack(
        [kg.entity_token(kg.heads), kg.relation_token(kg.relations), kg.entity_token(kg.tails)], axis=1
    )
    splits = Splits(train, train_bridge, evals, eval_bridges, facts, fact_is_ood, counts)
    check_invariants(splits)
    return splits


def check_invariants(splits: Splits) -> None:
    """No test query may be trained on; the counts must describe the arrays. Raises on violation."""
    train_queries = query_keys(splits.train)
    for name in ("test_inferred_iid", "test_inferred_ood"):
        leaked = np.isin(query_keys(splits.evals[name]), train_queries).sum()
        if leaked:
            raise ConfigError(f"invariant broken: {leaked} {name} queries appear in training")
    expected_train = splits.counts["atomic"] + splits.counts["train_inferred"]
    expected_train += splits.counts["added_hop1"] + splits.counts["added_hop2"]
    if len(splits.train) != expected_train:
        raise ConfigError(
            f"invariant broken: train has {len(splits.train)} items, counts say {expected_train}"
        )
