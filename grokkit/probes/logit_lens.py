"""Logit lens: what every intermediate state would predict if it were the last one.

Each stage's states go through the model's own final norm and unembedding (:meth:`TwoHopModel.unembed`).
Wang et al. read the rank of the bridge ``b`` at the r1 position and of ``r2`` at the r2 position per
layer; He et al. count a query as "Bridge Found" when ``b`` is the argmax at any position of any stage. Both
come from one forward per split; ranks are counts of larger logits, so nothing is sorted.

Bridge Found is only a circuit signal where the training objective cannot put the bridge by itself. The
atomic items ``h r1 -> b`` train one position to output ``tail(h, r1)``, which *is* the bridge of every
query ``h r1 r2``: the r1 position in a decoder, slot 2 in the recursive model (the model's own
``answer_position`` of an atomic item). ``circuit_signal`` is Bridge Found over every other position the
query shows (a decoder: the answer position, where the bridge can only be latent; the recursive model: its
other slots), and is the signal the circuit detector and the run classifier read by default. A model
trained on atomic facts only keeps it at chance, while ``bridge_found_any`` rises with atomic recall.
``circuit_signal_chance`` is its chance level, measured: the same rate for another query's bridge.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from grokkit.errors import ConfigError
from grokkit.models import TwoHopModel
from grokkit.probes.base import Probe
from grokkit.probes.figures import publish_heatmap
from grokkit.ranges import check_arguments
from grokkit.tokens import PAD

PREFIX = {
    "test_inferred_ood": "ood",
    "test_inferred_iid": "iid",
    "train_inferred": "train_inferred",
    "new_old": "new_old",  # the categories of data.injection (the transfer experiment)
    "old_new": "old_new",
    "new_new": "new_new",
}
FOUND = (
    "bridge_found_any",
    "bridge_found_answer_slot",
    "circuit_signal",
    "circuit_signal_chance",
    "target_found_any",
    "target_found_answer_slot",
)


def rank_of(logits: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """Rank of ``token`` (B,) in ``logits`` (B, V): how many tokens score strictly higher (0 = top-1); a NaN
    anywhere in a row counts against ``token``, so a broken state never ranks it first."""
    return (~(logits <= logits.gather(1, token[:, None]))).sum(-1)


def lens(model: TwoHopModel, items: torch.Tensor, bridges: torch.Tensor) -> dict[str, Any]:
    """Logit-lens results of two-hop ``items`` with their ``bridges``, keys without the split prefix."""
    inputs, _ = model.inputs_and_targets(items)
    _, states = model(inputs, return_states=True)  # (S, B, T, d)
    rows = torch.arange(len(items), device=items.device)
    answer, target = model.answer_position(items), items[:, 3]
    # Positions whose input is a query token or a blank slot; a decoder's position 3 reads t itself.
    positions = torch.arange(inputs.size(1), device=items.device)
    shown = ((positions < 3) | (inputs == PAD)).all(0)  # (T,)
    atomic = items.clone()
    atomic[:, 4] = PAD  # the same prefix as an atomic item h r1 -> b: where the objective puts the bridge
    unconfounded = shown & (positions[None, :] != model.answer_position(atomic)[:, None])  # (B, T)
    decoys = bridges.roll(1)  # another query's bridge: the same rate for it is the signal's chance level
    probes = {"bridge/r1": (1, bridges), "r2/r2": (2, items[:, 2]), "target/answer": (answer, target)}
    mrr: dict[str, list[torch.Tensor]] = {name: [] for name in probes}
    top1: dict[str, list[torch.Tensor]] = {name: [] for name in probes}
    bridge_map = []
    found = {key: torch.zeros(len(items), dtype=torch.bool, device=items.device) for key in FOUND}
    for state in states:
        logits = model.unembed(state)  # (B, T, V): one stage at a time keeps memory at B x T x V
        for name, (position, token) in probes.items():
            rank = rank_of(logits[rows, position], token)
            mrr[name].append((1.0 / (rank + 1)).mean())
            top1[name].append((rank == 0).float().mean())
        argmax = logits.argmax(-1)  # (B, T)
        hits = {"bridge": argmax == bridges[:, None], "target": argmax == target[:, None]}
        for entity, hit in hits.items():
            found[f"{entity}_found_any"] |= hit[:, shown].any(1)
            found[f"{entity}_found_answer_slot"] |= hit[rows, answer]
        found["circuit_signal"] |= (hits["bridge"] & unconfounded).any(1)
        found["circuit_signal_chance"] |= ((argmax == decoys[:, None]) & unconfounded).any(1)
        bridge_map.append(hits["bridge"][:, shown].float().mean(0))
    result: dict[str, Any] = {key: hit.float().mean().item() for key, hit in found.items()}
    for name in probes:  # one transfer per list: no host sync inside the loop
        token, position = name.split("/")
        result |= {
            f"{token}_mrr/{position}/stage{s}": v for s, v in enumerate(torch.stack(mrr[name]).tolist())
        }
        result[f"{token}_top1/{position}"] = torch.stack(top1[name]).tolist()
    result["best_bridge_stage"] = int(torch.stack(mrr["bridge/r1"]).argmax())
    result["bridge_top1_map"] = torch.stack(bridge_map).tolist()  # stages x shown positions
    return result


class LogitLens(Probe):
    """Per stage: MRR of the bridge at r1, of r2 at r2 and of t at the answer; Bridge/Target Found rates.

    Args:
        splits: Two-hop evaluation splits to read (keys are prefixed ``ood/``, ``iid/``, ``train_inferred/``;
            the transfer categories ``new_old/``, ``old_new/``, ``new_new/``).
        every_n_steps: See :class:`Probe`.
        per_decade: See :class:`Probe`.
        sample_size: Queries per split.
        seed: Seed of the query sample.
    """

    stage = 0

    def __init__(
        self,
        splits: tuple[str, ...] = ("test_inferred_ood", "test_inferred_iid"),
        every_n_steps: int = 1,
        per_decade: int | None = None,
        sample_size: int = 2000,
        seed: int = 0,
    ) -> None:
        super().__init__(
            every_n_steps=every_n_steps, per_decade=per_decade, sample_size=sample_size, seed=seed
        )
        check_arguments(self.name, type(self), locals())  # two-hop splits (grokkit.ranges)
        if not splits:
            raise ConfigError(f"logit_lens.splits is empty: name two-hop splits among {list(PREFIX)}")
        self.splits = tuple(splits)

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        data, model = trainer.datamodule, pl_module.eval_net
        device = next(model.parameters()).device
        result: dict[str, Any] = {}
        for split in self.splits:
            items, bridges = self.sample(data.split_items(split), data.split_bridges(split))
            found = lens(model, items.to(device), bridges.to(device))
            result |= {f"{PREFIX[split]}/{key}": value for key, value in found.items()}
        return result

    def render(self, writer: Any, step: int, result: dict[str, Any]) -> None:
        for split in self.splits:
            prefix = PREFIX[split]
            publish_heatmap(
                writer, step, self.name, f"{prefix}/bridge_top1_stage_x_position",
                torch.tensor(result[f"{prefix}/bridge_top1_map"]),
                title=f"logit lens: bridge is top-1\n{split}", colour_label="fraction of queries",
            )  # fmt: skip
