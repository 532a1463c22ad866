"""Class-label conditioning: one integer label per sample, an extra "null" label for classifier-free guidance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import check_request


class ClassLabels:
    """Class labels ``0..num_classes-1`` from the batch's ``label`` field; the null label is ``num_classes``.

    ``num_classes = 0`` is an unconditional model: no label is read or accepted. The number of classes is normally
    taken from the data (``num_classes: auto`` in the config); ``names`` (the data's class names, e.g. the folder's
    sub-folders) let users ask for ``label=organ`` and label the previews.

    Args:
        num_classes: number of classes (0: unconditional).
        names: optional class names, one per class.
        dropout: share of training samples given the null label (classifier-free guidance, Ho & Salimans 2022).
    """

    request_keys: tuple[str, ...] = ("label",)

    def __init__(self, num_classes: int = 0, names: Sequence[str] | None = None, dropout: float = 0.1):
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"conditioner.dropout is a probability in [0, 1], got {dropout}")
        names = list(names or [])
        if names and len(names) != num_classes:
            raise ValueError(f"conditioner.names: {len(names)} names for {num_classes} classes")
        self.num_classes, self.names, self.dropout = num_classes, names, dropout
        if num_classes == 0:
            self.request_keys = ()

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        if self.num_classes == 0:
            return {}
        if "label" not in batch:
            raise ValueError("the data gives no 'label' field, but the model is class-conditional (num_classes > 0)")
        return {"label": batch["label"]}

    def null(self) -> dict[str, Any]:
        return {"label": self.num_classes} if self.num_classes else {}

    def request(
        self, n: int, device: Any = "cpu", label: int | str | Sequence[int | str] | None = None, **request: Any
    ) -> dict[str, Tensor]:
        """Labels for ``n`` samples: one class (index or name) for all, one per sample, or ``None`` to cycle through
        the classes."""
        check_request(self, request)
        if self.num_classes == 0:
            if label is not None:
                raise ValueError("label: this model is unconditional (num_classes = 0): it takes no label")
            return {}
        if label is None:
            return {"label": (torch.arange(n) % self.num_classes).to(device)}
        values = [label] * n if isinstance(label, (int, str)) else list(label)
        if len(values) != n:
            raise ValueError(f"label: need one label or {n} (one per sample), got {len(values)}")
        return {"label": torch.tensor([self._index(v) for v in values], device=device)}

    def _index(self, value: int | str) -> int:
        if isinstance(value, str) and value in self.names:
            return self.names.index(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.num_classes:
            named = f" (or a name: {', '.join(self.names)})" if self.names else ""
            raise ValueError(f"label: classes are 0..{self.num_classes - 1}{named}, got {value!r}")
        return value

    def describe(self, cond: Mapping[str, Tensor]) -> list[str]:
        labels = cond.get("label")
        if labels is None:
            return []
        return [self.names[i] if i < len(self.names) else f"class {i}" for i in labels.tolist()]
