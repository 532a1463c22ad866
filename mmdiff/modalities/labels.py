"""Class-label conditions, shared by every class-conditional adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def class_conditions(
    n: int, num_classes: int, device: Any = "cpu", label: int | Sequence[int] | None = None, **unknown: Any
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(cond, null_cond)`` for ``n`` samples of a model with ``num_classes`` labels (null label = ``num_classes``).

    ``label`` is one class for all samples, one per sample, or ``None`` to cycle through the classes. An
    unconditional model (``num_classes == 0``) takes no label.
    """
    if unknown:
        raise ValueError(f"unknown condition(s) {sorted(unknown)}; this model takes: label")
    if num_classes == 0:
        if label is not None:
            raise ValueError("this model is unconditional (num_classes = 0): it takes no label")
        return {}, {}
    if label is None:
        labels = torch.arange(n) % num_classes
    else:
        labels = torch.as_tensor([label] * n if isinstance(label, int) else list(label))
        if labels.shape != (n,):
            raise ValueError(f"label: need one label or {n}, got {len(labels)}")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"label: classes are 0..{num_classes - 1}, got {labels.tolist()}")
    return {"label": labels.to(device)}, {"label": num_classes}
