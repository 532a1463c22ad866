"""Inference spacings: the decreasing list of ``steps + 1`` VE sigmas a sampler walks, ending at 0.

* ``karras``: Karras et al. 2022, eq. 5: uniform in ``sigma^(1/rho)``, dense near sigma_min.
* ``exponential``: uniform in log-sigma.
* ``trailing`` / ``leading`` / ``linspace``: uniform in the schedule's time (Lin et al. 2023, Table 2 names them).
  On a discrete :class:`~mmdiff.core.schedules.VPSchedule` these are the integer timesteps diffusers picks, so
  sigmas land exactly on the training table; on continuous schedules they are uniform in unit time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .schedules import Schedule, VPSchedule

SPACINGS = ("exponential", "karras", "trailing", "leading", "linspace")

#: The default noise range in units of the data's standard deviation ``sigma_data``: ``sigma_max`` well above the data
#: (the prior ``N(0, sigma_max^2)`` then differs from the noised data by ``sigma_data^2 / sigma_max^2`` in variance)
#: and ``sigma_min`` below the finest detail. Measured best at 10-20 denoiser calls on the known-answer mixtures
#: (``benchmarks/samplers.py``, docs/core.md); EDM's 0.002..80 at its sigma_data = 0.5 is 0.004..160.
SIGMA_MIN_PER_DATA = 0.01
SIGMA_MAX_PER_DATA = 20.0
#: The data scale assumed when neither ``sigma_data`` nor a schedule is given (EDM's, images in [-1, 1]).
DEFAULT_SIGMA_DATA = 0.5


def _known_sigma_data(schedule: Schedule | None, sigma_data: float | None) -> float | None:
    """``sigma_data`` when given, else the schedule's (EDM's carries one), else None; checked to be > 0."""
    if sigma_data is None and schedule is not None:
        sigma_data = getattr(schedule, "sigma_data", None)
    if sigma_data is not None and not (isinstance(sigma_data, (int, float)) and sigma_data > 0):
        raise ValueError(f"sigma_data: expected the data's standard deviation (> 0), got {sigma_data!r}")
    return sigma_data


def data_scale(schedule: Schedule | None = None, sigma_data: float | None = None) -> float:
    """The data's standard deviation a sampler assumes: ``sigma_data`` when given, else the schedule's (EDM), else
    :data:`DEFAULT_SIGMA_DATA`."""
    sigma_data = _known_sigma_data(schedule, sigma_data)
    return float(sigma_data) if sigma_data is not None else DEFAULT_SIGMA_DATA


def sigma_range(
    schedule: Schedule | None = None,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    sigma_data: float | None = None,
) -> tuple[float, float]:
    """The ``(sigma_min, sigma_max)`` a sampler walks: explicit values win; else ``sigma_data`` times
    (:data:`SIGMA_MIN_PER_DATA`, :data:`SIGMA_MAX_PER_DATA`), kept inside the schedule's trained range; with a
    schedule but no data scale, the schedule's own range (EDM's schedule carries its ``sigma_data``)."""
    sigma_data = _known_sigma_data(schedule, sigma_data)
    if sigma_data is None and schedule is not None:
        lo, hi = schedule.sigma_min, schedule.sigma_max
    else:
        scale = sigma_data if sigma_data is not None else DEFAULT_SIGMA_DATA
        lo, hi = SIGMA_MIN_PER_DATA * scale, SIGMA_MAX_PER_DATA * scale
        if schedule is not None:
            lo, hi = max(lo, schedule.sigma_min), min(hi, schedule.sigma_max)
    lo = sigma_min if sigma_min is not None else lo
    hi = sigma_max if sigma_max is not None else hi
    if not 0 < lo < hi:
        raise ValueError(f"sigma range: expected 0 < sigma_min < sigma_max, got {lo} and {hi}")
    return float(lo), float(hi)


def _with_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """``steps + 1`` sigmas from ``sigma_max`` to ``sigma_min`` uniform in ``sigma^(1/rho)``, then 0. float64."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _with_zero((hi + ramp * (lo - hi)) ** rho)


def exponential_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> Tensor:
    """``steps + 1`` sigmas uniform in log-sigma from ``sigma_max`` to ``sigma_min``, then 0. float64."""
    return _with_zero(torch.linspace(np.log(sigma_max), np.log(sigma_min), steps, dtype=torch.float64).exp())


def jump_sigmas(steps: int, sigma_min: float, sigma_jump: float, sigma_max: float) -> Tensor:
    """``steps + 1`` sigmas: ``sigma_max``, then exponential from ``sigma_jump`` down to ``sigma_min``, then 0; float64.

    For :func:`~mmdiff.core.samplers.trig_pc`, whose steps above about 2 ``sigma_data`` are nearly exact: one long
    first step from far above the data, the rest where the data's modes form (docs/core.md, "Few calls in the data's
    frame")."""
    if steps < 2:
        raise ValueError(f"jump_sigmas: steps must be >= 2 (the jump and at least one more), got {steps}")
    if not 0 < sigma_min < sigma_jump < sigma_max:
        raise ValueError(
            f"jump_sigmas: expected 0 < sigma_min < sigma_jump < sigma_max, got {sigma_min}, {sigma_jump}, {sigma_max}"
        )
    rest = exponential_sigmas(steps - 1, sigma_min, sigma_jump)
    return torch.cat([torch.tensor([float(sigma_max)], dtype=torch.float64), rest])


def _discrete_timesteps(num_timesteps: int, steps: int, spacing: str, steps_offset: int) -> np.ndarray:
    """Integer timesteps (decreasing) as diffusers' schedulers choose them for ``timestep_spacing``."""
    T = num_timesteps
    if spacing == "trailing":
        t = np.round(np.arange(T, 0, -T / steps)) - 1
    elif spacing == "leading":
        t = (np.arange(0, steps) * (T // steps)).round()[::-1] + steps_offset
    else:  # linspace
        t = np.linspace(0, T - 1, steps).round()[::-1]
    return np.clip(t, 0, T - 1).astype(np.float64)


def _continuous_units(steps: int, spacing: str) -> np.ndarray:
    """Unit times in ``[0, 1]`` (decreasing) for a continuous schedule."""
    if spacing == "trailing":
        return 1 - np.arange(steps) / steps
    if spacing == "leading":
        return (steps - 1 - np.arange(steps)) / steps
    return np.linspace(1, 0, steps)


def sigmas_for(
    schedule: Schedule | None,
    steps: int,
    spacing: str = "exponential",
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    sigma_data: float | None = None,
    rho: float = 7.0,
    steps_offset: int = 0,
) -> Tensor:
    """The ``steps + 1`` sigmas (float64, decreasing, last = 0) for ``steps`` sampler steps.

    The range comes from :func:`sigma_range` (explicit values, the data's scale, the schedule). ``schedule`` also
    gives the time axis of the time spacings; without one only ``exponential`` and ``karras`` apply.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    lo, hi = sigma_range(schedule, sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data)
    if spacing == "karras":
        return karras_sigmas(steps, lo, hi, rho)
    if spacing == "exponential":
        return exponential_sigmas(steps, lo, hi)
    if schedule is None:
        raise ValueError(f"spacing {spacing!r} is uniform in a schedule's time and needs a schedule")
    if isinstance(schedule, VPSchedule):
        t = torch.from_numpy(_discrete_timesteps(schedule.num_timesteps, steps, spacing, steps_offset).copy())
        return _with_zero(schedule.sigma_at_timestep(t))
    return _with_zero(schedule.sigma_at(torch.from_numpy(_continuous_units(steps, spacing).copy())))
