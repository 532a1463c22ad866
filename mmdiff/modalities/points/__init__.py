"""Points: vectors in R^D from a Gaussian mixture, the smallest modality.

It exercises the whole spine (data, training, checkpoints, generation, files) in seconds on a CPU, and since the
true distribution is known its samples can be scored exactly: a sanity check for a training setup.
"""

from .adapter import PointsAdapter
from .data import MixturePoints
from .net import PointsMLP

__all__ = ["MixturePoints", "PointsAdapter", "PointsMLP"]
