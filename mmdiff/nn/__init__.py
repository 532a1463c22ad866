"""Network building blocks shared by every modality's network."""

from .autoencoder import Autoencoder
from .embeddings import ConditionEmbedding, TimestepEmbedding
from .joint import JointUNet, clip_packing
from .unet import UNet

__all__ = ["Autoencoder", "ConditionEmbedding", "JointUNet", "TimestepEmbedding", "UNet", "clip_packing"]
