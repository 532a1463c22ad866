"""Time and condition embeddings, shared by every network."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .blocks import zero_init


def sinusoid_frequencies(frequencies: int, max_period: float) -> Tensor:
    """The ``frequencies // 2`` angular frequencies of sinusoidal features, geometric from 1 down to about
    ``1 / max_period`` (Vaswani et al. 2017)."""
    half = frequencies // 2
    return torch.exp(-math.log(max_period) * torch.arange(half) / half)


def sinusoids(values: Tensor, freqs: Tensor) -> Tensor:
    """``(N,)`` values -> ``(N, 2 * len(freqs))`` features: the cosines, then the sines, of ``values * freqs``."""
    args = values[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the network time ``t`` (Vaswani et al. 2017; Ho et al. 2020) followed by an MLP.

    ``t`` is whatever the schedule feeds the network (a DDPM index in [0, 1000), EDM's ``log(sigma)/4``, a flow
    time); ``scale`` multiplies it first so that all of these land on useful frequencies.
    """

    def __init__(self, dim: int, frequencies: int = 128, scale: float = 1.0, max_period: float = 10000.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("freqs", sinusoid_frequencies(frequencies, max_period), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * len(self.freqs), dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:  # (B,) -> (B, dim)
        return self.mlp(sinusoids(t.float() * self.scale, self.freqs))


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


class GridPosition(nn.Module):
    """Where each position sits: sinusoidal features of its index along every axis (Vaswani et al. 2017), through a
    zero-initialised linear layer, one ``(channels,)`` vector per position, ``(channels, *sizes)`` in all.

    Convolutions and relative-position attention are equivariant to shifts: a U-Net knows where it is only near the
    edges, through its padding (and a factorised video net knows a frame's index only at the clip's ends). A condition
    whose mean effect depends on position needs it: "moving left" puts the object on the right in the first frames
    and on the left in the last ones, a pattern over (frame, x) that no shift-equivariant layer can draw. With this
    added after the input convolution the network can (CoordConv, Liu et al. 2018, with sinusoids). Zero at the
    start, so a net with it begins as the net without; indices, not fractions, so longer clips keep their frames'
    meaning.
    """

    def __init__(self, channels: int, dims: int, frequencies: int = 16, max_period: float = 100.0):
        super().__init__()
        self.dims = dims
        self.register_buffer("freqs", sinusoid_frequencies(frequencies, max_period), persistent=False)
        self.proj = zero_init(nn.Linear(dims * 2 * len(self.freqs), channels))

    def forward(self, sizes: tuple[int, ...]) -> Tensor:  # -> (channels, *sizes)
        if len(sizes) != self.dims:
            raise ValueError(f"GridPosition: expected {self.dims} axes, got sizes {tuple(sizes)}")
        features = []
        for axis, size in enumerate(sizes):
            index = torch.arange(size, device=self.freqs.device, dtype=torch.float32)
            view = [1] * self.dims
            view[axis] = size
            feature = sinusoids(index, self.freqs).reshape(*view, -1)  # (1.., size, 1.., 2 half)
            features.append(feature.expand(*sizes, feature.shape[-1]))
        return self.proj(torch.cat(features, dim=-1)).movedim(-1, 0)  # (channels, *sizes)
