"""Training: the trainer, its run-directory rules, clean interruption and the deterministic data stream (checkpoint
I/O lives in :mod:`mmdiff.checkpoints`)."""

from .interrupt import TrainingInterrupted
from .runs import RunDirInUseError
from .trainer import NonFiniteLossError, Trainer

__all__ = ["NonFiniteLossError", "RunDirInUseError", "Trainer", "TrainingInterrupted"]
