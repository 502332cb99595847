"""Recursive two-block model in the style of the Tiny Recursive Model, as used by He et al. 2026.

One "level" is ``n_blocks`` distinct post-norm blocks. It is applied recursively::

    for h in range(H_cycles):                 # only the last H cycle carries gradients
        for l in range(L_cycles):
            z_L = level(z_L + z_H + x)        # one stage each
        z_H = level(z_H + z_L)                # one stage
    logits = lm_head(z_H)                     # every output position at once: h r1 r2 t </a>

Stage 0 is the input embedding ``x``; there are ``1 + H_cycles * (L_cycles + 1)`` stages (15 at 2 x 6).
Token mixing is an MLP across the sequence (no attention, no positions) or bidirectional attention with
learned positions. ``n_prefix`` scratch positions (the paper's 16 puzzle-embedding slots) may be prepended;
they are hidden from states and patches. ``original_trm`` builds three details as He et al.'s code does
(``TRM_model/models/recursive_reasoning/trm.py`` and ``layers.py`` of their repository), which grokkit's
own layout, the one its documented CPU runs used, does differently.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from grokkit.errors import ConfigError
from grokkit.models.base import CircuitSignal, Patch, TwoHopModel, pad_mask_targets, query_length
from grokkit.tokens import PAD


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),), eps=1e-5)


class SwiGLU(nn.Module):
    """Gated MLP over the last dimension, without biases."""

    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.gate_up, self.down = nn.Linear(width, 2 * inner, bias=False), nn.Linear(inner, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


def trm_width(width: int, expansion: float) -> int:
    """The inner width of the TRM code's SwiGLU: 2/3 of ``expansion`` x ``width``, up to a multiple of 256."""
    return 256 * math.ceil(round(expansion * width * 2 / 3) / 256)


class SequenceMixer(nn.Module):
    """MLP-Mixer token mixing: a SwiGLU across positions, one per channel (position-specific weights)."""

    def __init__(self, seq_len: int, inner: int) -> None:
        super().__init__()
        self.mlp = SwiGLU(seq_len, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)  # mix over T for each of the d channels


class SelfAttention(nn.Module):
    """Bidirectional attention: every output slot sees the whole query."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv, self.proj = (
            nn.Linear(d_model, 3 * d_model, bias=False),
            nn.Linear(d_model, d_model, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in self.qkv(x).split(C, dim=2)
        )
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, T, hd)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class PostNormBlock(nn.Module):
    """Token mixing, then a channel SwiGLU, each added and RMS-normalized; ``sequence_norm`` normalizes the
    mixing's sum across positions, channel by channel (the TRM code's MLP mixing), instead of per token."""

    def __init__(self, token_mixer: nn.Module, channel_inner: int, d_model: int, sequence_norm: bool) -> None:
        super().__init__()
        self.token_mixer, self.sequence_norm = token_mixer, sequence_norm
        self.channel_mlp = SwiGLU(d_model, channel_inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = x + self.token_mixer(x)
        x = rms_norm(mixed.transpose(1, 2)).transpose(1, 2) if self.sequence_norm else rms_norm(mixed)
        return rms_norm(x + self.channel_mlp(x))


class Recursive(TwoHopModel):
    """Two blocks of weights applied ``H_cycles x (L_cycles + 1)`` times; the loss is on the whole sequence.

    Args:
        vocab_size: Linked from the data.
        item_len: Linked from the data (the model reads and writes all ``item_len`` slots).
        d_model: Hidden size (paper: 1536).
        n_blocks: Distinct blocks in one level (paper: 2).
        H_cycles: Outer cycles (paper: 2).
        L_cycles: Inner cycles per outer cycle (paper: 6).
        token_mixing: ``mlp`` (paper) or ``attention``.
        n_heads: Heads, for ``token_mixing: attention``.
        expansion: Width factor of the channel SwiGLU (and of the sequence MLP).
        n_prefix: Scratch positions prepended to the sequence (paper: 16).
        original_trm: Three details as in He et al.'s code (``configs/he2026`` sets it): the MLP mixing's sum
            RMS-normalized across positions rather than per token; one learned prefix slot followed by
            ``n_prefix - 1`` zero slots, scaled with the token embeddings by sqrt(d_model), rather than
            ``n_prefix`` learned unscaled slots; and both SwiGLUs' inner widths 2/3 x ``expansion`` x width
            rounded up to a multiple of 256 (256 across 21 positions, 4096 at d_model 1536), rather than
            ``expansion`` x positions and a multiple of 8.
    """

    # He et al.'s Bridge Found: the model writes every slot at once, so the bridge appearing in any slot but
    # the one atomic items train to hold it is the circuit at work (chance ~1/|E|).
    circuit_signal = CircuitSignal("logit_lens", "{split}/circuit_signal", formed=0.95)

    def __init__(
        self,
        vocab_size: int,
        item_len: int,
        d_model: int = 128,
        n_blocks: int = 2,
        H_cycles: int = 2,
        L_cycles: int = 6,
        token_mixing: Literal["mlp", "attention"] = "mlp",
        n_heads: int = 4,
        expansion: float = 4.0,
        n_prefix: int = 0,
        original_trm: bool = False,
    ) -> None:
        super().__init__()
        sizes = dict(
            d_model=d_model, n_blocks=n_blocks, H_cycles=H_cycles, L_cycles=L_cycles, n_heads=n_heads
        )
        for name, value in {**sizes, "n_prefix": n_prefix}.items():
            least = 0 if name == "n_prefix" else 1
            if value < least:
                key = f"model.network.init_args.{name}"
                raise ConfigError(f"{key}={value} must be at least {least}", key)
        if token_mixing == "attention" and d_model % n_heads:
            raise ConfigError(
                f"model.network.init_args.d_model={d_model} must be divisible by "
                f"model.network.init_args.n_heads={n_heads}",
                "model.network.init_args.d_model",
                "model.network.init_args.n_heads",
            )
        self.d_model, self.H_cycles, self.L_cycles, self.n_prefix = d_model, H_cycles, L_cycles, n_prefix
        self.n_stages, self.original_trm = 1 + H_cycles * (L_cycles + 1), original_trm
        seq_len, mlp_mixing = n_prefix + item_len, token_mixing == "mlp"
        if original_trm:
            sequence_inner, channel_inner = trm_width(seq_len, expansion), trm_width(d_model, expansion)
        else:
            sequence_inner = max(8, round(expansion * seq_len))
            channel_inner = 8 * math.ceil(expansion * d_model * 2 / 3 / 8)

        def block() -> PostNormBlock:
            mixer = SequenceMixer(seq_len, sequence_inner) if mlp_mixing else SelfAttention(d_model, n_heads)
            return PostNormBlock(mixer, channel_inner, d_model, sequence_norm=original_trm and mlp_mixing)

        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Parameter(torch.zeros(seq_len, d_model)) if token_mixing == "attention" else None
        # the TRM code learns one puzzle embedding and pads it with zero slots
        learned = min(n_prefix, 1) if original_trm else n_prefix
        self.prefix = nn.Parameter(torch.zeros(learned, d_model))
        self.level = nn.ModuleList(block() for _ in range(n_blocks))
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.register_buffer("z_H_init", nn.init.trunc_normal_(torch.empty(d_model), std=1.0))
        self.register_buffer("z_L_init", nn.init.trunc_normal_(torch.empty(d_model), std=1.0))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
        nn.init.trunc_normal_(self.embed.weight, std=1.0 / math.sqrt(d_model))
        if self.positions is not None:  # apart, as the TRM code's: prefix slots share input and gradient else
            nn.init.trunc_normal_(self.positions, std=1.0 / math.sqrt(d_model))

    def inputs_and_targets(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        position = torch.arange(items.size(1), device=items.device)
        prompt = position[None, :] < query_length(items)[:, None]
        return items.masked_fill(~prompt, PAD), pad_mask_targets(items)

    def answer_position(self, items: torch.Tensor) -> torch.Tensor:
        return query_length(items)

    def unembed(self, state: torch.Tensor) -> torch.Tensor:
        return self.lm_head(state)  # post-norm: every stage is already normalized

    def input_embedding(self, inputs: torch.Tensor) -> torch.Tensor:
        """Prefix slots, scaled token embeddings and positions (B, n_prefix + T, d); the TRM code scales the
        prefix too, after adding the positions (each term then by 1/sqrt(2))."""
        B, scale = inputs.size(0), math.sqrt(self.d_model)
        if not self.original_trm:
            x = torch.cat([self.prefix.expand(B, -1, -1), scale * self.embed(inputs)], dim=1)
            return x if self.positions is None else x + self.positions
        zeros = self.prefix.new_zeros(self.n_prefix - len(self.prefix), self.d_model)
        x = torch.cat([torch.cat([self.prefix, zeros]).expand(B, -1, -1), self.embed(inputs)], dim=1)
        return scale * (x if self.positions is None else 0.707106781 * (x + self.positions))

    def apply_level(self, z: torch.Tensor) -> torch.Tensor:
        for block in self.level:
            z = block(z)
        return z

    def run(
        self, inputs: torch.Tensor, patch: Patch | None, states: list[torch.Tensor] | None
    ) -> torch.Tensor:
        x = self.visit(0, self.input_embedding(inputs), patch, states)
        z_H, z_L = self.z_H_init.expand_as(x), self.z_L_init.expand_as(x)
        stage, z_H_stage = 0, None  # the stage whose state z_H holds (None: its initial value)
        for h in range(self.H_cycles):
            with torch.set_grad_enabled(torch.is_grad_enabled() and h == self.H_cycles - 1):
                for _ in range(self.L_cycles):
                    stage += 1
                    z_L = self.visit(stage, self.apply_level(z_L + z_H + x), patch, states)
                    # a patched position carries the counterfactual's z_H and input embedding on, too
                    z_H, x = self.carry(patch, stage, z_H, z_H_stage), self.carry(patch, stage, x, 0)
                stage += 1
                z_H, z_H_stage = self.visit(stage, self.apply_level(z_H + z_L), patch, states), stage
                z_L, x = self.carry(patch, stage, z_L, stage - 1), self.carry(patch, stage, x, 0)
        return z_H[:, self.n_prefix :]  # (B, item_len, d): the prefix slots are never unembedded
