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

SPACINGS = ("karras", "exponential", "trailing", "leading", "linspace")


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
    spacing: str = "karras",
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    steps_offset: int = 0,
) -> Tensor:
    """The ``steps + 1`` sigmas (float64, decreasing, last = 0) for ``steps`` sampler steps.

    ``schedule`` gives the sigma range (overridable with ``sigma_min`` / ``sigma_max``) and, for the time spacings,
    the time axis. Without a schedule only ``karras`` and ``exponential`` apply, with the EDM range 0.002..80.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    lo = sigma_min if sigma_min is not None else (schedule.sigma_min if schedule is not None else 0.002)
    hi = sigma_max if sigma_max is not None else (schedule.sigma_max if schedule is not None else 80.0)
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
