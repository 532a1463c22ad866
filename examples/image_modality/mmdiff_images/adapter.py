"""The image adapter: what mmdiff needs to train on images and write them (see mmdiff.modality.ModalityAdapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from mmdiff.modality import ModalityAdapter


class ImageAdapter(ModalityAdapter):
    """RGB images as ``(3, H, W)`` tensors in [-1, 1]; PNG files; a one-row preview strip."""

    def __init__(self, resolution: int = 16):
        self.resolution = resolution

    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        return batch["image"].float() * 2 - 1, {}  # (B, 3, H, W) in [-1, 1]; labels are the conditioner's

    def decode(self, x: Tensor) -> list[Tensor]:
        return list(((x.float().clamp(-1, 1) + 1) / 2).cpu())  # each (3, H, W) in [0, 1]

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        if length is not None:
            raise ValueError("length: images have no length; leave it unset")
        return (3, self.resolution, self.resolution)

    def write(self, items: list[Tensor], directory: Path, prefix: str = "sample") -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, image in enumerate(items):
            paths.append(directory / f"{prefix}_{i:03d}.png")
            _to_pil(image).save(paths[-1])
        return paths

    def preview(self, items: list[Tensor], path: Path, captions: list[str] | None = None) -> Path:
        strip = torch.cat(list(items), dim=2)  # (3, H, W * n): the images side by side
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _to_pil(strip).resize((strip.shape[2] * 4, strip.shape[1] * 4), Image.NEAREST).save(path)
        return path


def _to_pil(image: Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
