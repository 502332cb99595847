"""GPT-2-style decoder whose layers can share weights (Wang et al. 2024).

Pre-LayerNorm blocks, learned positions, causal attention, tied input/output embeddings. ``n_layers`` block
applications run over ``n_unique_layers`` weight sets: application ``i`` uses weights ``i % n_unique_layers``,
so ``n_layers=8, n_unique_layers=4`` is Wang et al.'s 4-layer stack looped twice.

    tokens ─ wte + wpe ─► S[0] ─ block 0 ─► S[1] ─ ... ─ block (n_layers-1) % n_unique ─► S[n_layers] ─ ln_f ─ wteᵀ
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from grokkit.errors import ConfigError
from grokkit.models.base import IGNORE, CircuitSignal, Patch, TwoHopModel, query_length
from grokkit.models.dropout import Dropout, dropout


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, implementation: str) -> None:
        super().__init__()
        self.n_heads, self.dropout, self.implementation = n_heads, dropout, implementation
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in self.qkv(x).split(C, dim=2)
        )
        p = self.dropout if self.training else 0.0
        # At sequence length 4 an explicit softmax beats the fused kernel on CPU; on GPU the fused one wins.
        if self.implementation == "sdpa" or (self.implementation == "auto" and x.is_cuda):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            weights = dropout(scores.masked_fill(causal, float("-inf")).softmax(dim=-1), p, self.training)
            y = weights @ v  # (B, nh, T, hd)
        return dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)), p, self.training)


Activation = Literal["gelu_tanh", "gelu"]


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, dropout: float, activation: Activation) -> None:
        super().__init__()
        self.fc, self.proj, self.dropout = (
            nn.Linear(d_model, d_mlp),
            nn.Linear(d_mlp, d_model),
            Dropout(dropout),
        )
        self.activation = activation
        self.approximate = "tanh" if activation == "gelu_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(
        self, d_model: int, n_heads: int, d_mlp: int, dropout: float, attention: str, activation: Activation
    ) -> None:
        super().__init__()
        self.ln_1, self.attn = (
            nn.LayerNorm(d_model),
            CausalSelfAttention(d_model, n_heads, dropout, attention),
        )
        self.ln_2, self.mlp = nn.LayerNorm(d_model), MLP(d_model, d_mlp, dropout, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Decoder(TwoHopModel):
    """GPT-2-style causal decoder; the loss is on the answer ``t`` and ``</a>`` only.

    Args:
        vocab_size: Linked from the data.
        item_len: Linked from the data (the decoder reads ``item_len - 1`` tokens).
        d_model: Residual width.
        n_heads: Attention heads.
        n_layers: Block applications (the depth of the computation).
        n_unique_layers: Distinct weight sets; ``None`` means no sharing (= n_layers).
        d_mlp: MLP width; ``None`` means 4 x d_model.
        dropout: On embeddings, attention and residual branches (GPT-2: 0.1).
        attention: ``manual`` (explicit softmax), ``sdpa`` (fused kernel) or ``auto`` (sdpa on GPU only).
        activation: The MLP's GELU: ``gelu_tanh`` (GPT-2's tanh approximation, Wang et al.'s, so the class
            default) or ``gelu`` (the exact, erf form), whose kernel is ~2.5x faster on an AVX2 CPU: the step of
            ``configs/default.yaml``, which sets it, is ~9 % faster (``docs/demo_search.md``, last section).
    """

    # A decoder's circuit is Wang et al.'s signature: the causal strength of the bridge state S[mid, r1] on
    # the answer grows from weak (~0.5 when the compositions are memorized) to strong. The logit lens cannot
    # see it: the bridge is decodable at the r1 position by atomic recall alone, and at the answer position
    # it stays at chance even while the ID test accuracy climbs (README, "What `make fit` shows").
    circuit_signal = CircuitSignal("causal_tracing", "r1_mid_strength", formed=0.8)

    def __init__(
        self,
        vocab_size: int,
        item_len: int,
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 4,
        n_unique_layers: int | None = None,
        d_mlp: int | None = None,
        dropout: float = 0.0,
        attention: Literal["auto", "manual", "sdpa"] = "auto",
        activation: Activation = "gelu_tanh",
    ) -> None:
        super().__init__()
        n_unique_layers = n_unique_layers or n_layers
        if min(d_model, n_heads, n_layers, n_unique_layers) < 1 or d_model % n_heads:
            raise ConfigError(
                f"model.network.init_args: d_model ({d_model}) must be divisible by n_heads ({n_heads}), and "
                "every size positive",
                "model.network.init_args.d_model",
                "model.network.init_args.n_heads",
            )
        if n_layers % n_unique_layers:
            raise ConfigError(
                f"model.network.init_args: n_layers ({n_layers}) must be a multiple of n_unique_layers "
                f"({n_unique_layers})",
                "model.network.init_args.n_layers",
                "model.network.init_args.n_unique_layers",
            )
        self.d_model, self.n_layers, self.n_stages = d_model, n_layers, n_layers + 1
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(item_len - 1, d_model)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_mlp or 4 * d_model, dropout, attention, activation)
            for _ in range(n_unique_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.apply(self._init_weights)
        # GPT-2: scale residual projections by the depth of its config, which for Wang et al.'s shared model
        # (HF GPT-2 with n_layer 4, looped twice) counts the distinct blocks
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * n_unique_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def inputs_and_targets(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = items[:, :-1], items[:, 1:]
        position = torch.arange(targets.size(1), device=items.device)
        prompt = position[None, :] < (query_length(items) - 1)[:, None]  # predicting the prompt: no loss
        return inputs, targets.masked_fill(prompt | (targets == 0), IGNORE)

    def answer_position(self, items: torch.Tensor) -> torch.Tensor:
        return query_length(items) - 1

    def loss_positions(self, items: torch.Tensor) -> torch.Tensor:
        return self.answer_position(items)[:, None] + torch.arange(2, device=items.device)  # t, then </a>

    def unembed(self, state: torch.Tensor) -> torch.Tensor:
        return self.ln_f(state) @ self.wte.weight.T

    def run(
        self, inputs: torch.Tensor, patch: Patch | None, states: list[torch.Tensor] | None
    ) -> torch.Tensor:
        position = torch.arange(inputs.size(1), device=inputs.device)
        x = self.visit(0, self.drop(self.wte(inputs) + self.wpe(position)), patch, states)  # (B, T, d)
        for layer in range(self.n_layers):
            x = self.visit(layer + 1, self.blocks[layer % len(self.blocks)](x), patch, states)
        return x
