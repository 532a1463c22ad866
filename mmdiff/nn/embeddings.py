"""Time and condition embeddings, shared by every network."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the network time ``t`` (Vaswani et al. 2017; Ho et al. 2020) followed by an MLP.

    ``t`` is whatever the schedule feeds the network (a DDPM index in [0, 1000), EDM's ``log(sigma)/4``, a flow
    time); ``scale`` multiplies it first so that all of these land on useful frequencies.
    """

    def __init__(self, dim: int, frequencies: int = 128, scale: float = 1.0, max_period: float = 10000.0):
        super().__init__()
        self.scale = scale
        half = frequencies // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:  # (B,) -> (B, dim)
        args = (t.float() * self.scale)[:, None] * self.freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=1))


class ConditionEmbedding(nn.Module):
    """Class-label embedding with one extra row for the null label ``num_classes`` (classifier-free guidance).

    ``num_classes = 0`` makes an unconditional network: the embedding is then zero and ``label`` is ignored.
    Labels are not range-checked here: a check would read them on the host (a device sync in every forward pass, and a
    break in a ``torch.compile`` graph). User requests are validated where they enter, by the conditioner.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes, self.dim = num_classes, dim
        self.table = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, label: Tensor | None, batch: int, device) -> Tensor:  # (B,) -> (B, dim)
        if self.table is None or label is None:
            return torch.zeros(batch, self.dim, device=device)
        return self.table(label.long())  # (B, dim)
