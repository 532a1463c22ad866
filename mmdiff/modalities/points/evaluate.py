"""How close are generated points to the data? The sliced Wasserstein-1 distance to real points, with a floor."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...metrics import sliced_wasserstein
from ..evaluation import check_n, real_items


class PointsEvaluator:
    """Sliced W1 (:func:`~mmdiff.metrics.sliced_wasserstein`) of ``n`` generated points to ``n`` data points, and of
    ``n`` other data points (``"real, held out"``: the sampling floor a perfect model would reach).

    ``n`` is the default number of points per set; ``projections`` the number of random directions.
    """

    def __init__(self, n: int = 4096, projections: int = 256):
        self.n, self.projections = check_n(n, "PointsEvaluator"), int(projections)

    def __call__(
        self, pipe: Any, dataset: Any, n: int | None = None, seed: int = 0, progress: bool = False, **options: Any
    ) -> dict[str, dict[str, float]]:
        n = check_n(self.n if n is None else n, "PointsEvaluator")
        reference, held_out = real_items(dataset, n, "PointsEvaluator", "points")
        real = torch.stack([item["x"] for item in reference])  # (n, D)
        held = torch.stack([item["x"] for item in held_out])  # (n, D)
        generated = torch.as_tensor(np.stack(pipe.generate(n, seed=seed, progress=progress, **options)))  # (n, D)
        return {
            "generated": {"sliced_w1": sliced_wasserstein(generated, real, self.projections)},
            "real, held out": {"sliced_w1": sliced_wasserstein(held, real, self.projections)},
        }
