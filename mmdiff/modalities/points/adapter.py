"""The points adapter: identity encoding, ``.npy``/``.csv`` files and a scatter-plot preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ...modality import ModalityAdapter


class PointsAdapter(ModalityAdapter):
    """Points in R^``dim``: identity encoding, ``.npy``/``.csv`` files, a scatter-plot preview coloured by caption."""

    def __init__(self, dim: int = 2):
        self.dim = dim

    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        return batch["x"].float(), {}

    def decode(self, x: Tensor) -> list[np.ndarray]:
        return [row for row in x.detach().float().cpu().numpy()]

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        if length is not None:
            raise ValueError("length: points have no length; leave it unset")
        return (self.dim,)

    def write(self, items: list[np.ndarray], directory: Path, prefix: str = "points") -> list[Path]:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        array = np.stack(items)
        npy, csv = directory / f"{prefix}.npy", directory / f"{prefix}.csv"
        np.save(npy, array)
        np.savetxt(csv, array, delimiter=",", header=",".join(f"x{i}" for i in range(array.shape[1])), comments="")
        return [npy, csv]

    def preview(self, items: list[np.ndarray], path: Path, captions: list[str] | None = None) -> Path:
        """A scatter plot of the points, coloured by the first line of their captions (the condition)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        array = np.stack(items)
        groups = [c.splitlines()[0] if c else "" for c in captions] if captions else [""] * len(items)
        fig, ax = plt.subplots(figsize=(4, 4))
        for group in sorted(set(groups)):
            rows = [i for i, g in enumerate(groups) if g == group]
            ax.scatter(array[rows, 0], array[rows, 1 % array.shape[1]], s=4, alpha=0.6, label=group or None)
        if any(groups):
            ax.legend(fontsize=6, markerscale=3, loc="upper right")
        ax.set(aspect="equal", title=f"{len(items)} generated points")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return path
