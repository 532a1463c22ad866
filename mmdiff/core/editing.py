"""Editing as sampler input: SDEdit-style partial noising and masked generation (inpainting, continuation).

* ``strength`` (SDEdit, Meng et al. 2022): start from the input noised to an intermediate sigma and run only the
  last ``round(steps * strength)`` steps of the schedule.
* ``mask`` (1 = known, keep from ``init``; 0 = generate): the denoiser's x0 prediction is replaced by the known data
  where the mask is 1. Every sampler here is exact on a constant prediction, so the known region stays on the
  trajectory ``init + sigma * noise`` and ends exactly at ``init``, while the network sees it consistently noised at
  every step and fills the rest in agreement with it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

Denoiser = Callable[..., Tensor]


def truncate_for_strength(sigmas: Tensor, strength: float) -> Tensor:
    """The tail of ``sigmas`` (``steps + 1`` values) that runs ``round(steps * strength)`` steps, at least one."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must lie in (0, 1], got {strength}")
    steps = len(sigmas) - 1
    kept = max(1, round(steps * strength))
    return sigmas[steps - kept :]


def masked_denoiser(denoiser: Denoiser, known: Tensor, mask: Tensor) -> Denoiser:
    """A denoiser whose prediction equals ``known`` where ``mask`` is 1 (``mask`` broadcasts against ``known``)."""
    mask = mask.to(device=known.device, dtype=known.dtype)

    def inpaint(x: Tensor, sigma: Tensor, **cond: Tensor) -> Tensor:
        return mask * known + (1 - mask) * denoiser(x, sigma, **cond)

    return inpaint
