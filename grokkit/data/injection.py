"""Knowledge injection (He et al. 2026, section 6): new atomic facts added to a trained run's graph.

From the source dataset (the run's own tokens) this builds the fine-tuning data of the transfer experiment:

* a **replay** set of old training data: ID atomic facts taken in a seeded random order, each with every old
  training composition that uses it (as hop 1 or hop 2), as many facts as fit in ``replay_size`` items;
* ``n_new`` **new atomic facts** on existing entities, with relations those entities do not have yet, as
  chained pairs ``(a, r1, b)``, ``(b, r2, t)``; no new entity, no new relation, no new composition in
  training. Heads of new facts are tails of replayed facts and tails of new facts are heads of replayed
  facts, so every new fact takes part in at least one query of each mixed category below;
* evaluation categories: ``new_atomic`` (every new fact), ``new_old`` (a new fact as hop 1, a replayed old
  fact as hop 2), ``old_new`` (the reverse) and ``new_new``, beside the source's own splits.

"Old" in a mixed category means a replayed ID fact, one the model demonstrably keeps seeing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grokkit.data.kg import KnowledgeGraph, atomic_items, enumerate_two_hop, query_keys, two_hop_items
from grokkit.data.splits import EVAL_SPLITS, Splits
from grokkit.errors import ConfigError
from grokkit.tokens import EOS, N_SPECIAL

INJECTION_SPLITS = ("new_atomic", "new_old", "old_new", "new_new")
# what a validation can score: the injected ones in transfer runs
SCORED_SPLITS = (*EVAL_SPLITS, *INJECTION_SPLITS)
CATEGORIES = {"new_old": (True, False), "old_new": (False, True), "new_new": (True, True)}  # hop is new?


@dataclass(frozen=True)
class Injection:
    """How much old data is replayed and how many new facts are injected.

    Args:
        n_new: New atomic facts (even: they come as chained pairs).
        replay_size: Items of old training data replayed (atomic facts plus their compositions).
        eval_size: Queries kept per mixed category (``new_atomic`` holds every new fact).
    """

    n_new: int = 2000
    replay_size: int = 8000
    eval_size: int = 3000

    def __post_init__(self) -> None:
        if self.n_new < 2 or self.n_new % 2:
            raise ConfigError(
                f"data.injection.n_new={self.n_new} must be even and at least 2 (chained pairs)",
                "data.injection.n_new",
            )
        for name in ("replay_size", "eval_size"):
            if getattr(self, name) < 1:
                key = f"data.injection.{name}"
                raise ConfigError(f"{key}={getattr(self, name)} must be at least 1", key)


def graph_of(facts: torch.Tensor, names: dict[str, list[str]]) -> KnowledgeGraph:
    """The source graph back from its fact table (token ids, sorted by head) and its manifest's names."""
    n_entities, n_relations = len(names["entities"]), len(names["relations"])
    offsets = np.array([[N_SPECIAL], [N_SPECIAL + n_entities], [N_SPECIAL]])
    heads, relations, tails = facts.numpy().T - offsets
    return KnowledgeGraph(
        n_entities, n_relations, heads, relations, tails, names["entities"], names["relations"]
    )


def fact_index(kg: KnowledgeGraph) -> np.ndarray:
    """Dense (E, R) table: index of the fact ``(h, r, .)``, -1 where the entity lacks that relation."""
    table = np.full((kg.n_entities, kg.n_relations), -1, dtype=np.int64)
    table[kg.heads, kg.relations] = np.arange(kg.n_facts)
    return table


def replay(
    kg: KnowledgeGraph,
    first: np.ndarray,
    second: np.ndarray,
    is_id: np.ndarray,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Kept facts (bool per fact) and kept compositions (bool per pair): greedy over a random order of ID facts.

    A composition joins with the first of its two facts in that order; facts are taken while the total stays
    within ``size``.
    """
    order = rng.permutation(np.flatnonzero(is_id))
    rank = np.full(kg.n_facts, len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    joins_at = np.minimum(rank[first], rank[second])
    cost = 1 + np.bincount(joins_at[joins_at < len(order)], minlength=len(order))
    n_kept = int(np.searchsorted(np.cumsum(cost), size, side="right"))
    if n_kept == 0:
        raise ConfigError(
            f"data.injection.replay_size={size} is smaller than one fact with its compositions",
            "data.injection.replay_size",
        )
    kept = np.zeros(kg.n_facts, dtype=bool)
    kept[order[:n_kept]] = True
    return kept, joins_at < n_kept


def new_facts(
    kg: KnowledgeGraph, kept: np.ndarray, n_new: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """``n_new`` facts (heads, relations, tails) in unused (entity, relation) slots, as chained pairs."""
    free_h, free_r = np.nonzero(fact_index(kg) < 0)
    kept_heads, kept_tails = np.unique(kg.heads[kept]), np.unique(kg.tails[kept])
    n_pairs = n_new // 2
    # hop 2 of a pair starts at its bridge b, which must be a tail (old_new) and a head (new_old) of kept facts
    bridge_slots = np.flatnonzero(np.isin(free_h, np.intersect1d(kept_heads, kept_tails)))
    if len(bridge_slots) < n_pairs:
        raise ConfigError(
            f"data.injection.n_new={n_new} needs {n_pairs} free relation slots on bridge entities, the source graph "
            f"has {len(bridge_slots)}; lower n_new or raise replay_size",
            "data.injection.n_new",
        )
    second = rng.choice(bridge_slots, n_pairs, replace=False)
    head_slots = np.setdiff1d(np.flatnonzero(np.isin(free_h, kept_tails)), second)
    if len(head_slots) < n_pairs:
        raise ConfigError(
            f"data.injection.n_new={n_new} needs {n_pairs} more free relation slots, the source graph has "
            f"{len(head_slots)}; lower n_new",
            "data.injection.n_new",
        )
    first = rng.choice(head_slots, n_pairs, replace=False)
    tails = np.concatenate([free_h[second], rng.choice(kept_heads, n_pairs)])
    slots = np.concatenate([first, second])
    return free_h[slots], free_r[slots], tails


def inject(
    kg: KnowledgeGraph, source: dict[str, torch.Tensor], spec: Injection, rng: np.random.Generator
) -> Splits:
    """The fine-tuning splits: replay + new facts for training; the source's splits + the new categories."""
    old_train = source["train"].numpy()
    table = fact_index(kg)
    two_hop = old_train[:, 4] == EOS
    h, r1, r2 = (old_train[two_hop, i] for i in range(3))
    bridge = source["train_bridge"].numpy()[two_hop]
    rel0 = N_SPECIAL + kg.n_entities
    first, second = table[h - N_SPECIAL, r1 - rel0], table[bridge - N_SPECIAL, r2 - rel0]
    kept, kept_pairs = replay(kg, first, second, ~source["fact_is_ood"].numpy(), spec.replay_size, rng)

    heads, relations, tails = new_facts(kg, kept, spec.n_new, rng)
    is_new = np.concatenate([np.zeros(kg.n_facts, bool), np.ones(len(heads), bool)])
    order = np.argsort(np.concatenate([kg.heads, heads]), kind="stable")
    full = KnowledgeGraph(
        kg.n_entities, kg.n_relations, np.concatenate([kg.heads, heads])[order],
        np.concatenate([kg.relations, relations])[order], np.concatenate([kg.tails, tails])[order],
        kg.entity_names, kg.relation_names,
    )  # fmt: skip
    is_new, is_kept = is_new[order], np.concatenate([kept, np.zeros(len(heads), bool)])[order]

    new_ids = np.flatnonzero(is_new)
    train = np.concatenate([atomic_items(full, np.flatnonzero(is_kept)), old_train[two_hop][kept_pairs]])
    train = np.concatenate([train, atomic_items(full, new_ids)])
    train_bridge = np.full(len(train), -1)
    train_bridge[is_kept.sum() : is_kept.sum() + kept_pairs.sum()] = bridge[kept_pairs]

    evals, eval_bridges, totals = categories(full, is_new, is_kept, spec.eval_size, rng)
    for name in (key.removeprefix("eval/") for key in source if key.startswith("eval/")):  # the old splits
        evals[name], eval_bridges[name] = (
            source[f"eval/{name}"].numpy(),
            source[f"eval_bridge/{name}"].numpy(),
        )
    counts = {"replay_atomic": int(is_kept.sum()), "replay_inferred": int(kept_pairs.sum())}
    counts |= {"new_atomic": len(new_ids), "train": len(train)}
    counts |= {f"{name}_all": n for name, n in totals.items()}
    counts |= {f"eval_{name}": len(items) for name, items in evals.items()}
    facts = np.stack(
        [full.entity_token(full.heads), full.relation_token(full.relations), full.entity_token(full.tails)], 1
    )
    # new facts, like OOD ones, are never inside a training composition
    fact_is_ood = np.concatenate([source["fact_is_ood"].numpy(), np.ones(len(heads), bool)])[order]
    splits = Splits(train, train_bridge, evals, eval_bridges, facts, fact_is_ood, counts)
    check_injection(splits, is_new, is_kept, old_train)
    return splits


def categories(
    full: KnowledgeGraph, is_new: np.ndarray, is_kept: np.ndarray, eval_size: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
    """Items and bridges of ``new_atomic`` and of every category (at most ``eval_size`` each), and how many
    queries each category has in all."""
    new_ids = np.flatnonzero(is_new)
    evals, bridges = {"new_atomic": atomic_items(full, new_ids)}, {"new_atomic": np.full(len(new_ids), -1)}
    totals = {}
    pairs = enumerate_two_hop(full)
    for name, (hop1_new, hop2_new) in CATEGORIES.items():
        hop1, hop2 = (is_new if new else is_kept for new in (hop1_new, hop2_new))
        members = np.flatnonzero(hop1[pairs.first] & hop2[pairs.second])
        totals[name] = len(members)
        if len(members) > eval_size:
            members = np.sort(rng.choice(members, eval_size, replace=False))
        evals[name] = two_hop_items(full, pairs.first[members], pairs.second[members])
        bridges[name] = full.entity_token(full.tails[pairs.first[members]])
    return evals, bridges, totals


def check_injection(splits: Splits, is_new: np.ndarray, is_kept: np.ndarray, old_train: np.ndarray) -> None:
    """Every category query has the hops its name says; training holds no composition that is not old."""
    new_keys = set(map(tuple, splits.facts[is_new, :2].tolist()))
    kept_keys = set(map(tuple, splits.facts[is_kept, :2].tolist()))
    for name, (hop1_new, hop2_new) in CATEGORIES.items():
        for (h, r1, r2, _, _), b in zip(
            splits.evals[name].tolist(), splits.eval_bridges[name].tolist(), strict=True
        ):
            for key, new in (((h, r1), hop1_new), ((b, r2), hop2_new)):
                if key not in (new_keys if new else kept_keys):
                    raise ConfigError(
                        f"invariant broken: a {name} query has a hop that is not {'new' if new else 'old'}"
                    )
    train_two_hop = splits.train[splits.train[:, 4] == EOS]
    if not np.isin(query_keys(train_two_hop), query_keys(old_train[old_train[:, 4] == EOS])).all():
        raise ConfigError("invariant broken: training holds a composition that is not an old training one")
    train_keys = query_keys(splits.train)
    for name in ("new_old", "old_new", "new_new", "test_inferred_iid", "test_inferred_ood"):
        if np.isin(query_keys(splits.evals[name]), train_keys).any():
            raise ConfigError(f"invariant broken: {name} queries appear in training")
