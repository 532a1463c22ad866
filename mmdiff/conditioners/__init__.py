"""Conditioning as its own component: batch metadata and user requests -> the network's condition tensors.

A conditioner is chosen in the config with ``_target_`` (``conf/conditioner/``), separate from the modality adapter,
so class labels, text prompts and later another modality plug into the same seam. See :class:`Conditioner`.
"""

from .base import Conditioner, check_request, guidance_null, training_conditions
from .labels import ClassLabels
from .network import ConditionedNetwork, with_encoder
from .text import TextPrompts, TextTransformer

__all__ = [
    "ClassLabels",
    "ConditionedNetwork",
    "Conditioner",
    "TextPrompts",
    "TextTransformer",
    "check_request",
    "guidance_null",
    "training_conditions",
    "with_encoder",
]
