"""An image modality for mmdiff, written outside the package as the "Adding a modality" tutorial builds it.

Nothing in mmdiff changes: this package brings an adapter and a dataset, and reuses mmdiff's U-Net at two dimensions.
"""

from .adapter import ImageAdapter
from .data import ShapeImages

__all__ = ["ImageAdapter", "ShapeImages"]
