"""Training: the trainer and the deterministic data stream (checkpoint I/O lives in :mod:`mmdiff.checkpoints`)."""

from .trainer import NonFiniteLossError, Trainer

__all__ = ["NonFiniteLossError", "Trainer"]
