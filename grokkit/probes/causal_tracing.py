"""Causal tracing (Wang et al. 2024): which states carry the information the answer depends on.

For each query one input token (h, r1 or r2) is swapped for an ID alternative that changes the true answer
(with ``answered_only``, only for one whose query has an answer: Wang et al.'s protocol).
The counterfactual run's state at (stage L, that token's position) is copied into the normal run, which is
recomputed from there; the causal strength of (L, position) is the fraction of queries whose top-1 answer
is no longer ``t``. Queries the normal run gets wrong, or without a valid alternative, are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from grokkit.data.injection import CATEGORIES
from grokkit.errors import ConfigError
from grokkit.models import Patch, TwoHopModel
from grokkit.probes.base import Probe
from grokkit.probes.figures import publish_heatmap
from grokkit.ranges import check_arguments

TWO_HOP_SPLITS = ("train_inferred", "test_inferred_iid", "test_inferred_ood")
TRACEABLE_SPLITS = (*TWO_HOP_SPLITS, *CATEGORIES)  # the injected categories exist in transfer runs only
POSITIONS = ("h", "r1", "r2")


@dataclass
class TailTable:
    """``tail[(entity, relation)]`` of some facts as a dense (V, R) tensor: one gather per lookup, -1 if none."""

    table: torch.Tensor
    first_relation: int

    @classmethod
    def of(cls, facts: torch.Tensor, keep: torch.Tensor) -> TailTable:
        """Tables built from the same ``facts`` (F, 3) share one shape whatever ``keep`` (F,) selects."""
        first = int(facts[:, 1].min())
        table = torch.full(
            (int(facts.max()) + 1, int(facts[:, 1].max()) - first + 1), -1, device=facts.device
        )
        table[facts[keep, 0], facts[keep, 1] - first] = facts[keep, 2]
        return cls(table, first)

    def __call__(self, entity: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        return self.table[entity.clamp(min=0), relation - self.first_relation].masked_fill(entity < 0, -1)


def counterfactuals(
    items: torch.Tensor,
    facts: torch.Tensor,
    fact_is_ood: torch.Tensor,
    generator: torch.Generator,
    answered_only: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per position (h, r1, r2): the items with that token swapped (N, 5), and which queries have one (N,).

    Candidates are ID tokens: heads of ID facts for h, relations (h, r1') of ID facts for r1, relations
    (b, r2') of ID facts for r2. One is drawn uniformly among those whose answer (by all facts) is not ``t``:
    without ``answered_only`` that includes an h' or r1' whose query has no answer at all ((h', r1) or
    (b', r2) is no fact); with it the query has an answer, and for h' (h', r1) is an ID fact. The draws use
    the generator the same way either way.
    """
    everything, in_id = TailTable.of(facts, torch.ones_like(fact_is_ood)), TailTable.of(facts, ~fact_is_ood)
    h, t = items[:, 0, None], items[:, 3, None]  # (N, 1): broadcast over candidates
    relations = torch.arange(in_id.table.size(1), device=items.device) + in_id.first_relation
    candidates = (facts[~fact_is_ood, 0].unique(), relations, relations)
    swapped = []
    for position, candidate in enumerate(candidates):
        query = items[:, None, :3].repeat(1, len(candidate), 1)  # (N, C, 3)
        query[:, :, position] = candidate
        bridge = everything(query[..., 0], query[..., 1])
        answer = everything(bridge, query[..., 2])
        valid = (answer != t) & (candidate != items[:, position, None])  # h' candidates are ID heads already
        if answered_only:
            valid &= answer >= 0
        if position == 0 and answered_only:
            valid &= in_id(query[..., 0], query[..., 1]) >= 0
        elif position == 1:
            valid &= in_id(h, query[..., 1]) >= 0
        elif position == 2:
            valid &= in_id(bridge, query[..., 2]) >= 0
        scores = torch.rand(valid.shape, generator=generator).to(items.device).masked_fill(~valid, -1.0)
        counterfactual = items.clone()
        counterfactual[:, position] = candidate[scores.argmax(1)]  # t stays: no state patched here reads it
        swapped.append((counterfactual, valid.any(1)))
    return swapped


def causal_strengths(
    model: TwoHopModel, items: torch.Tensor, counterfactual: torch.Tensor, position: int, stages: range
) -> torch.Tensor:
    """Per stage: fraction of ``items`` whose top-1 answer is not ``t`` once (stage, position) is patched."""
    inputs, _ = model.inputs_and_targets(items)
    _, states = model(model.inputs_and_targets(counterfactual)[0], return_states=True)  # (S, N, T, d)
    rows, answer = torch.arange(len(items), device=items.device), model.answer_position(items)
    where = torch.full_like(answer, position)
    changed = []
    for stage in stages:  # one batched forward per stage, the whole sample at once
        logits = model(inputs, patch=Patch.of(states, stage, where))
        changed.append((logits[rows, answer].argmax(-1) != items[:, 3]).float().mean())
    return torch.stack(changed)


class CausalTracing(Probe):
    """Causal strength of every (stage, input position) on the answer; ``r1_mid_strength`` is Wang's S[5, r1].

    Args:
        split: Two-hop split to trace (Wang et al.: ``train_inferred``), or a category of injected facts
            (``new_old``, ``old_new``, ``new_new``: does a composition the model answers right go through the bridge?).
        mid_stage: Stage of the bridge state S[mid, r1]; ``None`` means round(0.625 x (n_stages - 1)), layer 5 of 8.
        every_n_steps: See :class:`Probe` (3 x (n_stages - 2) + 4 forwards per run).
        per_decade: See :class:`Probe`.
        sample_size: Queries traced (Wang et al.: 300).
        seed: Seed of the query sample and of the counterfactual draws.
        answered_only: Draw only alternatives whose query has an answer, with (h', r1) an ID fact for an h
            swap: Wang et al.'s "ID alternative that changes the answer". ``False`` (the default, with which
            every documented run was traced) also draws an h' or r1' whose query has no answer; on the
            default run's decoder that lowers ``r1_mid_strength`` (README, "Which signal means circuit formed").
    """

    stage = 0

    def __init__(
        self,
        split: str = "train_inferred",
        mid_stage: int | None = None,
        every_n_steps: int = 2000,
        per_decade: int | None = None,
        sample_size: int = 300,
        seed: int = 0,
        answered_only: bool = False,
    ) -> None:
        super().__init__(
            every_n_steps=every_n_steps, per_decade=per_decade, sample_size=sample_size, seed=seed
        )
        check_arguments(self.name, type(self), locals())  # the split one it can trace (grokkit.ranges)
        self.answered_only = answered_only
        self.split, self.mid_stage = split, mid_stage

    def check(self, pl_module: L.LightningModule) -> None:
        self.bridge_stage(pl_module.eval_net)

    def bridge_stage(self, model: TwoHopModel) -> int:
        """The stage of S[mid, r1] in ``model``."""
        mid = round(0.625 * (model.n_stages - 1)) if self.mid_stage is None else self.mid_stage
        if mid not in range(1, model.n_stages - 1):
            raise ConfigError(
                f"causal_tracing.mid_stage={mid} must be a patchable stage, 1..{model.n_stages - 2} "
                f"(this model has {model.n_stages} stages)"
            )
        return mid

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        data, model = trainer.datamodule, pl_module.eval_net
        stages = range(1, model.n_stages - 1)  # stage 0 is the token swap itself, the last is the output
        mid = self.bridge_stage(model)
        device = next(model.parameters()).device
        (items,) = self.sample(data.split_items(self.split).to(device))
        inputs, _ = model.inputs_and_targets(items)
        answer = model.answer_position(items)
        correct = model(inputs)[torch.arange(len(items), device=device), answer].argmax(-1) == items[:, 3]
        facts, fact_is_ood = data.tables["facts"].to(device), data.tables["fact_is_ood"].to(device)
        generator = torch.Generator().manual_seed(self.seed)
        result: dict[str, Any] = {"split": self.split, "normal_accuracy": correct.float().mean().item()}
        strength_map = torch.full((len(stages), len(POSITIONS)), float("nan"))
        swapped = counterfactuals(items, facts, fact_is_ood, generator, self.answered_only)
        for position, (counterfactual, valid) in enumerate(swapped):
            keep = valid & correct
            result[f"n_queries/{POSITIONS[position]}"] = int(keep.sum())
            if keep.any():
                strength = causal_strengths(model, items[keep], counterfactual[keep], position, stages)
                strength_map[:, position] = strength.cpu()
        for row, stage in enumerate(stages):
            for column, name in enumerate(POSITIONS):
                if not strength_map[row, column].isnan():
                    result[f"strength/{name}/stage{stage}"] = strength_map[row, column].item()
        if not strength_map[mid - 1, 1].isnan():
            result["r1_mid_strength"] = strength_map[mid - 1, 1].item()
        result["mid_stage"], result["strength_map"] = mid, strength_map.tolist()  # stages 1.. x (h, r1, r2)
        return result

    def render(self, writer: Any, step: int, result: dict[str, Any]) -> None:
        publish_heatmap(
            writer, step, self.name, "strength_stage_x_position", torch.tensor(result["strength_map"]),
            title=f"causal tracing: strength\n{self.split}", colour_label="answers changed by the patch",
            first_stage=1,
        )  # fmt: skip
