"""Synthetic images: one filled circle or square per image on a dark background; the shape is the label."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class ShapeImages(Dataset):
    """``size`` images of ``resolution x resolution`` pixels, deterministic by ``seed``.

    Items are ``{"image": (3, H, W) float32 in [0, 1], "label": 0 (circle) or 1 (square)}``; keys may be an index or
    the ``(index, item_seed)`` pairs mmdiff's trainer passes (the seed is not needed: images are fixed).
    """

    num_classes = 2

    def __init__(self, size: int = 1024, resolution: int = 16, seed: int = 0):
        self.size, self.resolution, self.seed = size, resolution, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        n = self.resolution
        label = index % 2
        radius = (0.2 + 0.15 * torch.rand((), generator=g)) * n
        cy, cx = (radius + torch.rand(2, generator=g) * (n - 2 * radius)).tolist()
        y, x = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
        if label == 0:
            inside = ((y - cy) ** 2 + (x - cx) ** 2).sqrt() <= radius
        else:
            inside = ((y - cy).abs() <= radius) & ((x - cx).abs() <= radius)
        colour = 0.5 + 0.5 * torch.rand(3, generator=g)
        image = 0.1 * torch.rand(3, 1, 1, generator=g) + inside.float() * colour[:, None, None]  # (3, H, W)
        return {"image": image.clamp(0, 1), "label": torch.tensor(label)}
