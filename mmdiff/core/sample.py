"""The core's public entry point: :func:`sample`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from .diffusers_bridge import DiffusersSampler
from .editing import masked_denoiser, truncate_for_strength
from .guidance import classifier_free_guidance
from .noise import NoisePrior, NoiseSource, Seed
from .samplers import SAMPLERS
from .schedules import Schedule, VPSchedule
from .spacing import data_scale, sigmas_for

SamplerLike = str | Callable[..., Tensor]


def _parameters(fn: Callable) -> frozenset[str]:
    """The keyword names ``fn`` takes (none for callables without a signature)."""
    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return frozenset()


def resolve_sampler(sampler: SamplerLike, schedule: Schedule | None = None) -> Callable[..., Tensor]:
    """A sampler function from a name (``"dpmpp_2m"``, ``"diffusers:UniPCMultistepScheduler"``) or a callable."""
    if callable(sampler):
        return sampler
    if sampler.startswith("diffusers:"):
        return DiffusersSampler(sampler.split(":", 1)[1], schedule if isinstance(schedule, VPSchedule) else None)
    if sampler not in SAMPLERS:
        raise ValueError(
            f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)} or 'diffusers:<SchedulerClass>'"
        )
    return SAMPLERS[sampler]


def sample(
    denoiser: Callable[..., Tensor],
    shape: Sequence[int],
    sampler: SamplerLike = "unipc",
    steps: int = 20,
    seed: Seed = None,
    *,
    sigmas: Sequence[float] | Tensor | None = None,
    schedule: Schedule | None = None,
    spacing: str = "exponential",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    sigma_data: float | None = None,
    cond: Mapping[str, Tensor] | None = None,
    guidance_scale: float = 1.0,
    null_cond: Mapping[str, Any] | None = None,
    guidance_rescale: float = 0.0,
    guidance_interval: tuple[float, float] | None = None,
    init: Tensor | None = None,
    strength: float = 1.0,
    mask: Tensor | None = None,
    noise_prior: NoisePrior | None = None,
    device: torch.device | str | None = None,
    callback: Callable | None = None,
    progress: bool = False,
    **sampler_options: Any,
) -> Tensor:
    """Generate a batch ``shape = (B, ...)`` (any rank) with ``denoiser(x, sigma, **cond) -> x0_hat``.

    Args:
        denoiser: the VE-frame denoiser (wrap a trained network with
            :class:`~mmdiff.core.parameterization.NetworkDenoiser`).
        shape: the full batch shape, batch first.
        sampler: a name from :data:`~mmdiff.core.samplers.SAMPLERS` (default ``unipc``, the measured best at 5-20
            calls), ``"diffusers:<SchedulerClass>"``, or a function
            with the sampler signature.
        steps: number of sampler steps (Heun uses ``2 * steps - 1`` denoiser calls).
        seed: a list of per-sample seeds (batch-invariant), one int, a ``torch.Generator`` or ``None``.
        sigmas: an explicit decreasing sigma list (overrides ``steps``/``schedule``/``spacing``).
        schedule: the model's schedule: its trained sigma range bounds the default range, and its time axis serves
            the time spacings (``trailing`` ...).
        spacing: ``exponential`` (uniform in log-sigma, the measured best at 10-20 calls), ``karras``,
            ``trailing``, ``leading`` or ``linspace``.
        sigma_min: the smallest nonzero sigma (default: from ``sigma_data``, see
            :func:`~mmdiff.core.spacing.sigma_range`).
        sigma_max: the starting sigma (default: from ``sigma_data``).
        sigma_data: the data's standard deviation; the default range is ``0.01 sigma_data .. 20 sigma_data``
            (inside the schedule's range). Without it: the schedule's ``sigma_data`` (EDM), else the schedule's own
            range, else 0.5 (EDM's).
        cond: conditions passed to the denoiser as keyword tensors.
        guidance_scale: classifier-free guidance scale (:func:`~mmdiff.core.guidance.classifier_free_guidance`);
            active when not 1.
        null_cond: the unconditional input for guidance, per key of ``cond``.
        guidance_rescale: guidance rescale in [0, 1] (Lin et al. 2023).
        guidance_interval: ``(sigma_lo, sigma_hi)``: guide only inside it.
        init: the input to edit (SDEdit) or to keep parts of (``mask``), shaped ``shape``.
        strength: SDEdit: start from ``init`` noised to the sigma at ``strength`` of the schedule.
        mask: 1 where ``init`` is known and kept, 0 where to generate (inpainting, continuation); needs ``init``.
        noise_prior: maps every noise draw (the start and stochastic samplers' fresh noise): the prior the model
            was trained with (:class:`~mmdiff.core.noise.SharedNoise`); default white noise.
        device: where to sample (default: ``init``'s device, else CPU).
        callback: called with a :class:`~mmdiff.core.samplers.StepInfo` after each step.
        progress: show a tqdm progress bar.
        **sampler_options: passed to the sampler (``eta=``, ``s_churn=`` ...).

    Returns:
        The samples, float32, shaped ``shape``.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2:
        raise ValueError(f"shape must be (batch, ...) with at least 2 dims, got {shape}")
    if init is not None and tuple(init.shape) != shape:
        raise ValueError(f"init has shape {tuple(init.shape)} but shape is {shape}")
    if mask is not None and init is None:
        raise ValueError("mask needs init: the known values to keep where mask is 1")
    device = torch.device(device) if device is not None else (init.device if init is not None else torch.device("cpu"))
    run = resolve_sampler(sampler, schedule)

    if sigmas is not None:
        sigma_list = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if len(sigma_list) < 2 or (sigma_list[1:] > sigma_list[:-1]).any() or sigma_list[-1] < 0:
            raise ValueError("sigmas must be a decreasing list of at least 2 non-negative values")
    elif isinstance(run, DiffusersSampler):
        sigma_list = run.sigmas(steps)
    else:
        sigma_list = sigmas_for(
            schedule, steps, spacing, sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data
        )
    if strength != 1.0:
        if init is None:
            raise ValueError("strength < 1 needs init: the input to start from")
        sigma_list = truncate_for_strength(sigma_list, strength)

    noise = NoiseSource(seed, shape[0], device, prior=noise_prior)
    start = torch.zeros(shape, device=device) if init is None else init.to(device).float()
    x = start + noise(start) * float(sigma_list[0])

    model = partial(denoiser, **dict(cond)) if cond else denoiser
    if guidance_scale != 1.0:
        if not cond or null_cond is None:
            raise ValueError("guidance_scale != 1 needs cond and null_cond (the unconditional input)")
        model = partial(
            classifier_free_guidance(denoiser, guidance_scale, null_cond, guidance_rescale, guidance_interval),
            **dict(cond),
        )
    if mask is not None:
        model = masked_denoiser(model, start, mask.to(device))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sigma_list) - 1, desc="sampling", leave=False)

    def on_step(info):
        if bar is not None:
            bar.update(1)
        if callback is not None:
            callback(info)

    if "sigma_data" in _parameters(run):  # a sampler that works in the data's own frame (trig_pc)
        sampler_options = {"sigma_data": data_scale(schedule, sigma_data), **sampler_options}
    try:
        with torch.no_grad():
            return run(model, x, sigma_list, noise=noise, callback=on_step, **sampler_options)
    finally:
        if bar is not None:
            bar.close()
