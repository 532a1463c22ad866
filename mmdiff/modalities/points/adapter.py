"""The points adapter: identity encoding, ``.npy``/``.csv`` files and a scatter-plot preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..labels import class_conditions


class PointsAdapter:
    """Points in R^``dim``; class-conditional when ``num_classes > 0`` (labels ``0..num_classes-1``, null = ``num_classes``)."""

    def __init__(self, dim: int = 2, num_classes: int = 0):
        self.dim, self.num_classes = dim, num_classes

    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        cond = {"label": batch["label"]} if self.num_classes > 0 else {}
        return batch["x"].float(), cond

    def decode(self, x: Tensor) -> list[np.ndarray]:
        return [row for row in x.detach().float().cpu().numpy()]

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        if length is not None:
            raise ValueError("points have no length; leave length unset")
        return (self.dim,)

    def conditions(self, n: int, device: Any = "cpu", **request: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return class_conditions(n, self.num_classes, device, **request)

    def write(self, items: list[np.ndarray], directory: Path, prefix: str = "points") -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        array = np.stack(items)
        npy, csv = directory / f"{prefix}.npy", directory / f"{prefix}.csv"
        np.save(npy, array)
        np.savetxt(csv, array, delimiter=",", header=",".join(f"x{i}" for i in range(array.shape[1])), comments="")
        return [npy, csv]

    def preview(self, items: list[np.ndarray], path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        array = np.stack(items)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(array[:, 0], array[:, 1 % array.shape[1]], s=4, alpha=0.6)
        ax.set(aspect="equal", title=f"{len(items)} generated points")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return path
