"""A dataset of points drawn from a Gaussian ring mixture, labelled by mixture component."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ...core import GaussianMixture


class MixturePoints(Dataset):
    """``size`` points from :meth:`GaussianMixture.ring`, deterministic by ``seed``.

    Items are ``{"x": (dim,), "label": component}``; keys may be an index or an ``(index, item_seed)`` pair as the
    trainer's sampler yields (the seed is unused: the points are fixed).
    """

    reads_files = False  # items are made in memory: trainer.num_workers=auto adds workers only on a GPU

    def __init__(
        self, size: int = 8192, components: int = 8, radius: float = 2.0, std: float = 0.15, dim: int = 2, seed: int = 0
    ):
        self.mixture = GaussianMixture.ring(components, radius, std, dim)
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.multinomial(self.mixture.weights, size, replacement=True, generator=g)
        noise = torch.randn(size, dim, generator=g, dtype=torch.float64)
        self.points = (self.mixture.means[self.labels] + self.mixture.stds[self.labels, None] * noise).float()
        self.num_classes = components

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        return {"x": self.points[index], "label": self.labels[index]}
