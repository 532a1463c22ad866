"""Small tensor helpers shared by every part of the core.

Everything in :mod:`mmdiff.core` is rank-agnostic: a per-sample quantity of shape ``(B,)`` is broadcast against a
batch ``(B, ...)`` of any rank with :func:`append_dims` (the k-diffusion idiom), so audio ``(B, C, T)`` and video
``(B, C, F, H, W)`` share every line.
"""

from __future__ import annotations

import torch
from torch import Tensor


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims to ``t`` until it has ``ndim`` dims: ``(B,) -> (B, 1, ..., 1)``."""
    missing = ndim - t.ndim
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {t.ndim} dims, more than the target {ndim}")
    return t.reshape(*t.shape, *([1] * missing))


def per_sample(value: float | Tensor, x: Tensor) -> Tensor:
    """Return ``value`` as a float32 ``(B,)`` tensor on ``x``'s device, for a batch ``x`` of shape ``(B, ...)``.

    Accepts a Python number, a 0-d tensor or a ``(B,)`` tensor (e.g. a sampler's sigma for the whole batch).
    """
    t = torch.as_tensor(value, dtype=torch.float32, device=x.device)
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"expected a scalar or a ({x.shape[0]},) tensor, got shape {tuple(t.shape)}")
    return t


def mean_over_sample(t: Tensor) -> Tensor:
    """Mean over every dim but the batch dim: ``(B, ...) -> (B,)``."""
    return t.reshape(t.shape[0], -1).mean(dim=1)
