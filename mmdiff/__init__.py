"""mmdiff: a multi-modal diffusion toolkit. One rank-agnostic diffusion core (:mod:`mmdiff.core`); modality adapters
for audio and video plug into it."""

__version__ = "0.1.0"
