"""diffusers as a bridge: its schedulers as samplers, its scheduler configs as schedules.

* :class:`DiffusersSampler` runs any diffusers scheduler (``"diffusers:UniPCMultistepScheduler"`` in
  :func:`mmdiff.core.sample`) over an mmdiff denoiser. The scheduler is built on a VP beta table (the sampling
  schedule's, or DDPM's linear one) and fed epsilon predictions derived from the denoiser's x0.
* :func:`schedule_from_diffusers` reads a ``scheduler_config.json`` (a dict or a path) and returns the matching
  mmdiff schedule and parameterisation, so a network trained with diffusers can be sampled here.

diffusers is imported lazily: the core itself does not need it.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import Tensor

from .noise import NoiseSource
from .samplers import StepInfo
from .schedules import (
    FlowSchedule,
    Schedule,
    VPSchedule,
    rescale_zero_terminal_snr,
    vp_cosine,
    vp_linear,
    vp_scaled_linear,
    vp_sigmoid,
)

_PREDICTION_TYPES = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0", "flow_prediction": "flow"}
_BETA_SCHEDULES = {
    "linear": vp_linear,
    "scaled_linear": vp_scaled_linear,
    "squaredcos_cap_v2": vp_cosine,
    "sigmoid": vp_sigmoid,
}


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class called ``name``; the error lists the available ones."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not name.endswith("Scheduler"):
        available = sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and not n.startswith("_"))
        raise ValueError(f"unknown diffusers scheduler {name!r}; available: {', '.join(available)}")
    return cls


class DiffusersSampler:
    """A diffusers scheduler with mmdiff's sampler signature.

    Args:
        scheduler: a diffusers scheduler class name (``"DPMSolverMultistepScheduler"``).
        schedule: the VP table to build it on (default: DDPM's linear betas, 1000 steps).
        **scheduler_kwargs: passed to the scheduler (``use_karras_sigmas=True``, ``timestep_spacing="trailing"`` ...).

    The sampler walks the scheduler's own timesteps; :meth:`sigmas` gives the matching VE sigmas, which
    :func:`mmdiff.core.sample` uses to draw the starting noise.
    """

    def __init__(self, scheduler: str, schedule: VPSchedule | None = None, **scheduler_kwargs: Any):
        self.name = scheduler
        self.cls = scheduler_class(scheduler)
        self.schedule = schedule if schedule is not None else vp_linear()
        if not isinstance(self.schedule, VPSchedule):
            raise ValueError(f"diffusers schedulers need a discrete VP schedule, got {self.schedule!r}")
        accepted = inspect.signature(self.cls.__init__).parameters
        kwargs: dict[str, Any] = {
            "num_train_timesteps": self.schedule.num_timesteps,
            "trained_betas": self.schedule.betas.numpy(),
            "prediction_type": "epsilon",
        }
        if "clip_sample" in accepted:
            kwargs["clip_sample"] = False  # mmdiff data is not assumed to lie in [-1, 1]
        kwargs.update(scheduler_kwargs)
        unknown = set(kwargs) - set(accepted)
        if unknown:
            raise ValueError(
                f"{scheduler} does not take {sorted(unknown)}; it takes {sorted(set(accepted) - {'self'})}"
            )
        self.scheduler_kwargs = kwargs

    def __repr__(self) -> str:
        return f"DiffusersSampler({self.name!r})"

    def _fresh(self, steps: int, device: torch.device):
        scheduler = self.cls(**self.scheduler_kwargs)  # a new one per call: diffusers schedulers are stateful
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def _sigma(self, scheduler, i: int, t: Tensor) -> float:
        own = getattr(scheduler, "sigmas", None)
        if own is not None and len(own) == len(scheduler.timesteps) + 1:
            return float(own[i])
        return float(self.schedule.sigma_at_timestep(t.double().cpu()))

    def sigmas(self, steps: int) -> Tensor:
        """The VE sigmas (float64, ``steps + 1``, last 0) this sampler walks for ``steps`` steps."""
        scheduler = self._fresh(steps, torch.device("cpu"))
        values = [self._sigma(scheduler, i, t) for i, t in enumerate(scheduler.timesteps)]
        return torch.tensor([*values, 0.0], dtype=torch.float64)

    def __call__(self, denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSource | None = None, callback=None):
        steps = len(sigmas) - 1
        scheduler = self._fresh(steps, x.device)
        first = self._sigma(scheduler, 0, scheduler.timesteps[0])
        if not math.isclose(first, float(sigmas[0]), rel_tol=1e-4):
            raise ValueError(
                f"{self.name} starts at sigma {first:.6g} but the sampler was given sigma {float(sigmas[0]):.6g}; "
                "diffusers samplers walk their own timesteps, so pass no explicit sigmas, init or strength"
            )
        generator = None if noise is None else (noise.generators or noise.generator)
        # The scheduler's `sample` is either the VP x_t (scale_model_input is the identity) or the VE x
        # (scale_model_input divides by sqrt(sigma^2 + 1)); express our VE x in whichever it uses.
        t0 = scheduler.timesteps[0]
        c0 = float(scheduler.scale_model_input(torch.ones(1, device=x.device), t0).flatten()[0])
        sample = x.float() * ((1 + first**2) ** -0.5 / c0)
        for i, t in enumerate(scheduler.timesteps):
            sigma = self._sigma(scheduler, i, t)
            alpha = (1 + sigma**2) ** -0.5
            x_ve = scheduler.scale_model_input(sample, t) / alpha
            denoised = denoiser(x_ve, torch.full((x.shape[0],), sigma, device=x.device)).float()
            eps = (x_ve - denoised) / sigma
            step_kwargs = (
                {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
            )
            sample = scheduler.step(eps, t, sample, **step_kwargs).prev_sample
            if callback is not None:
                callback(StepInfo(i, sigma, float(sigmas[i + 1]), sample, denoised))
        return sample.float()


def schedule_from_diffusers(config: Mapping[str, Any] | str | PathLike) -> tuple[Schedule, str]:
    """The mmdiff ``(schedule, parameterization)`` for a diffusers scheduler config (dict or ``scheduler_config.json``).

    Discrete VP schedulers (DDPM, DDIM, DPM-Solver, Euler, UniPC, ...) give a :class:`VPSchedule`; flow-matching
    schedulers give a :class:`FlowSchedule` with their ``shift`` and time scale.
    """
    if not isinstance(config, Mapping):
        with open(config) as f:
            config = json.load(f)
    cls_name = config.get("_class_name", "")
    num = int(config.get("num_train_timesteps", 1000))
    if "FlowMatch" in cls_name or ("shift" in config and "beta_schedule" not in config):
        return FlowSchedule(shift=float(config.get("shift", 1.0)), time_scale=float(num)), "flow"
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in _PREDICTION_TYPES:
        raise ValueError(f"scheduler config: prediction_type {prediction!r} is not one of {sorted(_PREDICTION_TYPES)}")
    zero_snr = bool(config.get("rescale_betas_zero_snr", False))
    if config.get("trained_betas") is not None:
        betas = torch.as_tensor(config["trained_betas"], dtype=torch.float64)
        return VPSchedule(rescale_zero_terminal_snr(betas) if zero_snr else betas), _PREDICTION_TYPES[prediction]
    name = config.get("beta_schedule", "linear")
    if name not in _BETA_SCHEDULES:
        raise ValueError(f"scheduler config: beta_schedule {name!r} is not one of {sorted(_BETA_SCHEDULES)}")
    kwargs: dict[str, Any] = {"num_timesteps": num, "zero_terminal_snr": zero_snr}
    if name != "squaredcos_cap_v2":
        kwargs.update(beta_start=float(config.get("beta_start", 1e-4)), beta_end=float(config.get("beta_end", 0.02)))
    return _BETA_SCHEDULES[name](**kwargs), _PREDICTION_TYPES[prediction]
