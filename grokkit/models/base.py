"""What every grokkit model offers the trainer and the probes.

A model reads token items ``h r1 r2 t </a>`` (atomic: ``h r t </a> <pad>``), turns them into its own inputs
and targets, and exposes its residual stream as a list of *stages* (stage 0 = input embedding, then one per
layer or recursion step). ``forward`` can return every stage at every position in one pass, and can run
with one state replaced (a :class:`Patch`) while recomputing everything downstream of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from grokkit.tokens import EOS, IGNORE, PAD


@dataclass(frozen=True)
class CircuitSignal:
    """Which probe result says "the two-hop circuit formed" for a model family, and from which level.

    ``key`` may hold ``{split}``, the logit lens's prefix of the queries read (``ood``, ``iid``). A signal is
    valid only if the training objective cannot produce it by itself (see ``grokkit.probes.logit_lens``).
    """

    section: str  # the probe publishing it (its name on the results board)
    key: str
    formed: float  # the level that counts as formed, when held for a few evaluations


@dataclass
class Patch:
    """Overwrite the state at ``stage`` and per-example ``position`` with ``value`` (B, d_model).

    ``carried`` (n_stages, B, d_model), the counterfactual's states at that position at every stage, lets a
    model whose position carries more than the patched state replace all of it (the recursive model's other
    stream and its input embedding, re-added at every L step); without it only the stage's state is replaced.
    """

    stage: int
    position: torch.Tensor  # (B,) long
    value: torch.Tensor  # (B, d_model)
    carried: torch.Tensor | None = None  # (n_stages, B, d_model)

    @classmethod
    def of(cls, states: torch.Tensor, stage: int, position: torch.Tensor) -> Patch:
        """Everything a counterfactual run (its ``states``, (n_stages, B, T, d_model)) has at ``position`` (B,)
        from ``stage`` on."""
        carried = states[:, torch.arange(states.size(1), device=states.device), position]
        return cls(stage, position, carried[stage], carried)

    def apply(self, state: torch.Tensor) -> torch.Tensor:
        patched = state.clone()
        patched[torch.arange(len(state), device=state.device), self.position] = self.value.to(state.dtype)
        return patched


def query_length(items: torch.Tensor) -> torch.Tensor:
    """3 for two-hop items (h r1 r2), 2 for atomic ones (h r)."""
    return 2 + (items[:, 4] == EOS).long()


class TwoHopModel(nn.Module):
    """Base class: the stage bookkeeping shared by the decoder and the recursive model."""

    n_stages: int
    d_model: int
    n_prefix: int = 0  # extra positions a model keeps before the tokens; hidden from states and patches
    circuit_signal: CircuitSignal

    def inputs_and_targets(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model inputs (B, T) and targets (B, T) with ``IGNORE`` where no loss is taken."""
        raise NotImplementedError

    def loss_positions(self, items: torch.Tensor) -> torch.Tensor | None:
        """Per item, the K input positions that hold every target the loss reads (B, K), when a fixed K
        does: a training step then unembeds those alone. ``None``: the loss may read any position."""
        return None

    def training_io(
        self, items: torch.Tensor, every_position: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs, the targets a training loss reads, and the positions to unembed (``None``: all).

        The loss is the same either way; unembedding only the loss positions skips the vocabulary matmul
        and the softmax where every target is ``IGNORE`` (the decoder's prompt: half its positions).
        """
        inputs, targets = self.inputs_and_targets(items)
        positions = None if every_position else self.loss_positions(items)
        return inputs, (targets if positions is None else targets.gather(1, positions)), positions

    def answer_position(self, items: torch.Tensor) -> torch.Tensor:
        """Per item, the input position whose output predicts the answer entity ``t``."""
        raise NotImplementedError

    def unembed(self, state: torch.Tensor) -> torch.Tensor:
        """Logit lens: project a residual state (..., d_model) to vocabulary logits."""
        raise NotImplementedError

    def forward(
        self,
        inputs: torch.Tensor,
        patch: Patch | None = None,
        return_states: bool = False,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V), or (B, K, V) at ``positions`` (B, K); with ``return_states`` also the stack of
        states (n_stages, B, T, d_model)."""
        states: list[torch.Tensor] | None = [] if return_states else None
        final = self.run(inputs, patch, states)
        if positions is not None:
            final = final[torch.arange(len(final), device=final.device)[:, None], positions]
        logits = self.unembed(final)
        return (logits, torch.stack(states)[:, :, self.n_prefix :]) if states is not None else logits

    def run(
        self, inputs: torch.Tensor, patch: Patch | None, states: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """The last stage at the item positions (B, T, d_model), before the unembedding."""
        raise NotImplementedError

    def visit(
        self, stage: int, state: torch.Tensor, patch: Patch | None, states: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """Every stage passes through here: it is patched if asked, then recorded if asked."""
        if patch is not None and patch.stage == stage:
            state = Patch(stage, patch.position + self.n_prefix, patch.value).apply(state)
        if states is not None:
            states.append(state)
        return state

    def carry(self, patch: Patch | None, stage: int, stream: torch.Tensor, since: int | None) -> torch.Tensor:
        """A stream (last set at stage ``since``; ``None``: its initial value, the same in every run) that a
        patch at ``stage`` replaces too, with what the counterfactual's held at the patched position."""
        if patch is None or patch.stage != stage or patch.carried is None or since is None:
            return stream
        return Patch(since, patch.position + self.n_prefix, patch.carried[since]).apply(stream)


def pad_mask_targets(targets: torch.Tensor) -> torch.Tensor:
    return targets.masked_fill(targets == PAD, IGNORE)
