"""Training: the trainer, checkpoints and the deterministic data stream."""

from .checkpoint import latest_checkpoint, load_weights, save_checkpoint
from .trainer import NonFiniteLossError, Trainer

__all__ = ["NonFiniteLossError", "Trainer", "latest_checkpoint", "load_weights", "save_checkpoint"]
