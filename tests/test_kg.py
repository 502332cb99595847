"""The generator's invariants on a small graph, and the paper-scale counts (spec section 1)."""

import copy

import numpy as np
import pytest
from conftest import small_splits

from grokkit.data.kg import (
    EOS,
    PAD,
    atomic_items,
    enumerate_two_hop,
    generate_graph,
    graph_from_triples,
    query_keys,
)
from grokkit.data.splits import SplitSpec, build_splits
from grokkit.errors import ConfigError


def fact_table(graph):
    return {(h, r): t for h, r, t in zip(graph.heads, graph.relations, graph.tails, strict=True)}


def test_graph_is_a_function_with_the_requested_degree(small_graph):
    assert small_graph.n_facts == 60 * 6
    assert len(fact_table(small_graph)) == small_graph.n_facts  # (h, r) unique
    assert np.all(np.bincount(small_graph.heads) == 6)


def test_two_hop_facts_chain_through_the_bridge(small_graph):
    two_hop = enumerate_two_hop(small_graph)
    assert len(two_hop.first) == 60 * 6 * 6
    assert np.all(small_graph.tails[two_hop.first] == small_graph.heads[two_hop.second])
    pairs = set(zip(two_hop.first.tolist(), two_hop.second.tolist(), strict=True))
    assert len(pairs) == len(two_hop.first)


def test_splits_are_disjoint_and_counted(small_graph):
    splits = small_splits(small_graph)
    counts = splits.counts
    assert counts["atomic_ood"] == round(0.2 * small_graph.n_facts)
    assert counts["train_inferred"] == round(3.0 * counts["atomic_id"])
    assert len(splits.train) == counts["atomic"] + counts["train_inferred"]
    train = set(query_keys(splits.train).tolist())
    for split in ("test_inferred_iid", "test_inferred_ood"):
        assert not train & set(query_keys(splits.evals[split]).tolist())
    assert (splits.train[: counts["atomic"], 3] == EOS).all() and (
        splits.train[: counts["atomic"], 4] == PAD
    ).all()
    assert (splits.train[counts["atomic"] :, 4] == EOS).all()


def test_ood_atomic_repeats_copy_exactly_the_ood_facts(small_graph):
    once, thrice = small_splits(small_graph), small_splits(small_graph, ood_atomic_repeats=3)
    n_ood = once.counts["atomic_ood"]
    assert thrice.counts["ood_atomic_repeated"] == 2 * n_ood
    assert len(thrice.train) == len(once.train) + 2 * n_ood
    atomic_rows = thrice.train[thrice.train[:, 4] == PAD]
    copies = dict(zip(*np.unique(query_keys(atomic_rows), return_counts=True), strict=True))
    every_fact = atomic_items(small_graph, np.arange(small_graph.n_facts))
    is_ood = dict(zip(query_keys(every_fact), thrice.fact_is_ood, strict=True))
    assert {copies[key] for key in copies if is_ood[key]} == {3}
    assert {copies[key] for key in copies if not is_ood[key]} == {1}
    assert (thrice.train_bridge[: len(atomic_rows)] == -1).all()
    for name in ("test_inferred_iid", "test_inferred_ood", "train_inferred"):
        assert np.array_equal(thrice.evals[name], once.evals[name])  # no extra draws from the generator


def test_answers_and_bridges_follow_the_graph(small_graph):
    splits = small_splits(small_graph)
    tail = {(h, r): t for h, r, t in splits.facts.tolist()}
    for name in ("train_inferred", "test_inferred_iid", "test_inferred_ood"):
        for (h, r1, r2, t, _), b in zip(
            splits.evals[name].tolist(), splits.eval_bridges[name].tolist(), strict=True
        ):
            assert tail[(h, r1)] == b and tail[(b, r2)] == t
    ood = {tuple(f) for f in splits.facts[splits.fact_is_ood].tolist()}
    for h, r1, r2, t, _ in splits.evals["test_inferred_ood"].tolist():
        b = tail[(h, r1)]
        assert (h, r1, b) in ood and (b, r2, t) in ood


def test_same_seed_same_data_other_seed_other_data():
    def build(seed):
        rng = np.random.default_rng(seed)
        return build_splits(generate_graph(50, 10, 5, rng), SplitSpec(phi=2.0), rng).train

    assert np.array_equal(build(3), build(3))
    assert not np.array_equal(build(3), build(4))


@pytest.mark.parametrize(("hop1", "hop2"), [((1.0, 4), (0.0, 0)), ((0.0, 0), (1.0, 4)), ((0.5, 2), (0.5, 2))])
def test_regimes_expose_ood_facts_at_the_right_hop(small_graph, hop1, hop2):
    natural = small_splits(small_graph)
    regime = small_splits(small_graph, hop1_ratio=hop1[0], hop1_k=hop1[1], hop2_ratio=hop2[0], hop2_k=hop2[1])
    added = regime.train[len(natural.train) :]
    assert len(added) == regime.counts["added_hop1"] + regime.counts["added_hop2"] > 0
    tail = {(h, r): t for h, r, t in regime.facts.tolist()}
    ood = {tuple(f) for f in regime.facts[regime.fact_is_ood].tolist()}
    ood_test_hops = {1: set(), 2: set()}
    for h, r1, r2, t, _ in regime.evals["test_inferred_ood"].tolist():
        ood_test_hops[1].add((h, r1, tail[(h, r1)]))
        ood_test_hops[2].add((tail[(h, r1)], r2, t))
    per_fact = {1: {}, 2: {}}
    for h, r1, r2, t, _ in added.tolist():
        b = tail[(h, r1)]
        first_ood, second_ood = (h, r1, b) in ood, (b, r2, t) in ood
        assert first_ood != second_ood  # exactly one OOD hop: never an OOD test query
        hop, fact = (1, (h, r1, b)) if first_ood else (2, (b, r2, t))
        assert fact in ood_test_hops[hop]
        per_fact[hop][fact] = per_fact[hop].get(fact, 0) + 1
    for hop, (ratio, k) in ((1, hop1), (2, hop2)):
        if k == 0:
            assert not per_fact[hop]
        else:
            assert 0 < len(per_fact[hop]) <= round(ratio * len(ood_test_hops[hop]))
            assert max(per_fact[hop].values()) <= k
    assert not set(query_keys(added).tolist()) & set(query_keys(regime.evals["test_inferred_ood"]).tolist())


def test_impossible_phi_is_refused_with_the_field_named(small_graph):
    with pytest.raises(ConfigError, match=r"data\.phi=50.*max phi"):
        small_splits(small_graph, phi=50.0)


def test_user_triples_must_be_functions():
    graph = graph_from_triples([("a", "r", "b"), ("b", "r", "c")], source="facts.tsv")
    assert graph.n_entities == 3 and graph.n_relations == 1
    with pytest.raises(ConfigError, match="facts.tsv: fact 2"):
        graph_from_triples([("a", "r", "b"), ("a", "r", "c")], source="facts.tsv")


def test_paper_scale_counts():
    """Wang et al. / He et al.: 40,000 atomic, 800,000 two-hop, ~2,000 OOD queries, 724,000 items at phi 18;
    the both-hop regimes add what the README's "The data" says (paper: 22,697 + 21,492 and 5,724 + 5,778)."""
    rng = np.random.default_rng(0)  # as TwoHopDataModule.draw: the graph, then the splits, from data.seed
    graph = generate_graph(2000, 200, 20, rng)
    regimes = {"full": (1.0, 18), "half": (0.5, 9)}
    counts = {
        name: build_splits(
            graph, SplitSpec(phi=18.0, hop1_ratio=r, hop1_k=k, hop2_ratio=r, hop2_k=k), copy.deepcopy(rng)
        ).counts
        for name, (r, k) in regimes.items()
    }
    full = counts["full"]
    assert full["atomic"] == 40_000 and full["atomic_ood"] == 2_000
    assert full["two_hop"] == 800_000 and full["test_inferred_ood_all"] == 1_974
    assert full["train_inferred"] == 684_000
    assert full["train"] - full["added_hop1"] - full["added_hop2"] == 724_000
    assert [(c["added_hop1"], c["added_hop2"]) for c in counts.values()] == [(22_807, 20_970), (5_742, 5_620)]
