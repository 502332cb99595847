"""The train/evaluation splits of the composition task, built from a knowledge graph.

Follows Wang et al. 2024 ("Grokked Transformers are Implicit Reasoners") for the fact-level ID/OOD split and
the ratio phi, and He et al. 2026 ("Is Grokking Worthwhile?") for the data regimes that expose OOD facts
inside training compositions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from grokkit.data.kg import KnowledgeGraph, atomic_items, enumerate_two_hop, query_keys, two_hop_items
from grokkit.errors import ConfigError

EVAL_SPLITS = ("id_atomic", "ood_atomic", "train_inferred", "test_inferred_iid", "test_inferred_ood")


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
    ood_atomic_repeats: int = 1

    def __post_init__(self) -> None:  # phi 3 and phi 3.0 are one dataset, with one directory name and digest
        for field in fields(self):
            if field.type == "float":
                object.__setattr__(self, field.name, float(getattr(self, field.name)))
        for hop, ratio, k in ((1, self.hop1_ratio, self.hop1_k), (2, self.hop2_ratio, self.hop2_k)):
            if ratio > 0 and k == 0:  # a regime asked for, the natural data drawn: _inject adds nothing
                raise ConfigError(
                    f"data.hop{hop}_ratio={ratio} with data.hop{hop}_k=0 adds no compositions (k is how many "
                    f"each chosen fact gets); set data.hop{hop}_k (He et al.: 18 full, 9 half), or "
                    f"data.hop{hop}_ratio 0 for the natural data",
                    f"data.hop{hop}_ratio",
                    f"data.hop{hop}_k",
                )


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
    if not len(id_facts):
        raise ConfigError(
            f"data.ood_fraction={spec.ood_fraction} makes all {kg.n_facts} atomic facts OOD: nothing is left "
            "to train or test in distribution; use a value below 1",
            "data.ood_fraction",
        )

    two_hop = enumerate_two_hop(kg)
    first_ood, second_ood = fact_is_ood[two_hop.first], fact_is_ood[two_hop.second]
    both_id = np.flatnonzero(~first_ood & ~second_ood)
    both_ood = np.flatnonzero(first_ood & second_ood)
    to_test = rng.random(len(both_id)) < spec.test_iid_probability
    test_iid, pool = both_id[to_test], both_id[~to_test]
    if not len(test_iid):
        raise ConfigError(
            f"data.test_iid_probability={spec.test_iid_probability} holds out none of the {len(both_id)} ID "
            "two-hop facts: test_inferred_iid, the ID test, would be empty; raise it",
            "data.test_iid_probability",
        )

    n_train_inferred = round(spec.phi * len(id_facts))
    if n_train_inferred > len(pool):
        raise ConfigError(
            f"data.phi={spec.phi} asks for {n_train_inferred} training two-hop facts but only {len(pool)} "
            f"ID two-hop facts are left for training (max phi {len(pool) / len(id_facts):.2f}; "
            f"data.test_iid_probability={spec.test_iid_probability} held out {len(test_iid)} for the ID test); "
            "lower data.phi or data.test_iid_probability, or raise data.out_degree",
            "data.phi",
            "data.test_iid_probability",
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

    # OOD facts sit in no training composition, so only their own items hold them against weight decay.
    atomic_facts = np.concatenate([np.arange(kg.n_facts), np.tile(ood_facts, spec.ood_atomic_repeats - 1)])
    train_pairs = np.concatenate([train_inferred, added])
    train = np.concatenate(
        [
            atomic_items(kg, atomic_facts),
            two_hop_items(kg, two_hop.first[train_pairs], two_hop.second[train_pairs]),
        ]
    )
    train_bridge = np.concatenate(
        [np.full(len(atomic_facts), -1), kg.entity_token(kg.tails[two_hop.first[train_pairs]])]
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
        "ood_atomic_repeated": len(atomic_facts) - kg.n_facts,
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
    expected_train = (
        splits.counts["atomic"] + splits.counts["ood_atomic_repeated"] + splits.counts["train_inferred"]
    )
    expected_train += splits.counts["added_hop1"] + splits.counts["added_hop2"]
    if len(splits.train) != expected_train:
        raise ConfigError(
            f"invariant broken: train has {len(splits.train)} items, counts say {expected_train}"
        )
