"""Conditioning as its own component: batch metadata and user requests -> the network's condition tensors.

A conditioner is chosen in the config with ``_target_`` (``conf/conditioner/``), separate from the modality adapter,
so class labels today and text or another modality later plug into the same seam. See :class:`Conditioner`.
"""

from .base import Conditioner, check_request, training_conditions
from .labels import ClassLabels

__all__ = ["ClassLabels", "Conditioner", "check_request", "training_conditions"]
