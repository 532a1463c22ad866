"""Network building blocks shared by every modality's network."""

from .autoencoder import Autoencoder
from .embeddings import ConditionEmbedding, TimestepEmbedding
from .unet import UNet

__all__ = ["Autoencoder", "ConditionEmbedding", "TimestepEmbedding", "UNet"]
