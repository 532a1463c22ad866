"""Network building blocks shared by every modality's network."""

from .embeddings import ConditionEmbedding, TimestepEmbedding

__all__ = ["ConditionEmbedding", "TimestepEmbedding"]
