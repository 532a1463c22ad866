"""mmdiff: a multi-modal diffusion toolkit. One rank-agnostic diffusion core (:mod:`mmdiff.core`); modality adapters
(:mod:`mmdiff.modalities`) plug into it; :func:`load` turns a trained run into a generation pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .pipeline import Pipeline


def load(path: Any, device: Any = None, ema: bool = True) -> Pipeline:
    """Load a trained run (run directory, checkpoint folder or ``.safetensors`` file) for generation.

    >>> pipe = mmdiff.load("runs/my_run")                          # doctest: +SKIP
    >>> clips = pipe.generate(4, steps=25, sampler="dpmpp_2m", seed=0)
    >>> paths = pipe.save(clips, "out/")
    """
    from .pipeline import load as _load

    return _load(path, device=device, ema=ema)


__all__ = ["__version__", "load"]
