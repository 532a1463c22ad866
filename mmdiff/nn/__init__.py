"""Network building blocks shared by every modality's network."""

from .embeddings import ConditionEmbedding, TimestepEmbedding
from .unet import UNet

__all__ = ["ConditionEmbedding", "TimestepEmbedding", "UNet"]
