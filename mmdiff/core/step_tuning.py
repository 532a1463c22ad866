"""Tuned step schedules: fit the sigma list of a few-step sampler to a many-step reference from the same noise.

A sampler with few steps follows the probability-flow ODE coarsely; where its steps fall decides most of its error.
Align Your Steps (Sabour et al. 2024) optimises the step positions per model; this module does the direct variant
that the paper compares against: for a calibration batch of starting noises, minimise the mean squared distance
between the ``steps``-step result and a many-step reference result from the *same* noise, over the interior sigmas::

    min_{sigma_1 > ... > sigma_{N-1}}  E_noise || sample(sigmas) - sample(reference_sigmas) ||^2

``sigma_max`` (where the noise starts) and the final 0 stay fixed, and the list stays inside the starting list's
range (no sigma below its smallest positive one, where the reference ends too), so the fitted list is a drop-in
replacement for the one :func:`~mmdiff.core.spacing.sigmas_for` gives. The free values are logits that cut the
log-sigma range into gaps (:func:`sigmas_from_logits`), so every candidate is a decreasing list. Samplers take
the sigma list as plain floats (no gradient), so the fit uses a derivative-free optimiser, SciPy's Powell method
(conjugate directions with line searches, Powell 1964), under a fixed budget of sampler runs. On the Gaussian
mixtures of :mod:`mmdiff.core.gmm` it reached a 2-3x smaller distance than adaptive Nelder-Mead at 150 runs (10 steps).

The fit is deterministic: same model, batch, seeds and budget give the same list. It suits the deterministic
samplers (``dpmpp_2m``, ``euler``, ``heun``, ``unipc`` ...); with a stochastic one the few-step and the reference
runs draw different noise, and the fitted distance includes that noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .sample import SamplerLike, sample
from .spacing import karras_sigmas

#: logits are clipped to +-this: a gap never shrinks below ~e^-24 of another, so the list stays strictly decreasing in float64 (no zero-length steps)
_LOGIT_LIMIT = 12.0


def reference_sigmas(sigmas: Sequence[float] | Tensor, steps: int = 100) -> Tensor:
    """The reference list for a fit of ``sigmas``: ``steps`` Karras steps (rho 7) over the same range (its first
    sigma to its smallest positive one), then 0. float64 ``(steps + 1,)``."""
    sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    positive = sig[sig > 0]
    if len(positive) == 0:
        raise ValueError("reference_sigmas: the sigma list has no positive value")
    return karras_sigmas(steps, float(positive.min()), float(positive.max()))


def sigmas_from_logits(sigma_max: float, sigma_floor: float, theta: np.ndarray) -> Tensor:
    """``[sigma_max, sigma_1, ..., sigma_{N-1}, 0]`` from ``theta (N-1,)``: the log-range from ``sigma_max`` down to
    ``sigma_floor`` is cut into ``N`` gaps in proportion to ``softmax([theta, 0])``; the last gap is the slack below
    ``sigma_{N-1}``. Every ``theta`` gives a decreasing list inside ``[sigma_floor, sigma_max]``. float64."""
    z = np.clip(np.append(np.asarray(theta, dtype=np.float64), 0.0), -_LOGIT_LIMIT, _LOGIT_LIMIT)
    share = np.exp(z - z.max())
    share /= share.sum()
    log_sig = math.log(sigma_max) - math.log(sigma_max / sigma_floor) * np.cumsum(share[:-1])
    return torch.tensor([sigma_max, *np.exp(log_sig).tolist(), 0.0], dtype=torch.float64)


def logits_from_sigmas(sigmas: Tensor, sigma_floor: float) -> np.ndarray:
    """The inverse of :func:`sigmas_from_logits`: ``theta (N-1,)`` of a decreasing list ending at 0 whose smallest
    positive value is above ``sigma_floor`` (at it, the slack gets a tiny share)."""
    log_sig = torch.as_tensor(sigmas, dtype=torch.float64)[:-1].log().numpy()
    gaps = np.maximum(-np.diff(np.append(log_sig, math.log(sigma_floor))), 1e-4 * (log_sig[0] - math.log(sigma_floor)))
    return np.log(gaps[:-1] / gaps[-1])


def schedule_error(result: Tensor, reference: Tensor) -> float:
    """The root-mean-square distance between paired samples ``(B, ...)``: the fit's objective, in the model's units."""
    return float((result.double() - reference.double()).pow(2).mean().sqrt())


def tune_sigmas(
    denoiser: Callable[..., Tensor],
    shape: Sequence[int],
    steps: int,
    *,
    sigmas_init: Sequence[float] | Tensor,
    seeds: Sequence[int],
    sampler: SamplerLike = "dpmpp_2m",
    reference_steps: int = 100,
    reference: Tensor | None = None,
    cond: Mapping[str, Tensor] | None = None,
    guidance_scale: float = 1.0,
    null_cond: Mapping[str, Any] | None = None,
    evaluations: int = 200,
    device: torch.device | str | None = None,
    progress: bool = False,
    info: MutableMapping[str, Any] | None = None,
    **sample_options: Any,
) -> Tensor:
    """Fit the ``steps + 1`` sigmas of a ``steps``-step ``sampler`` to a many-step reference (see the module doc).

    Args:
        denoiser: the VE-frame denoiser ``denoiser(x, sigma, **cond) -> x0_hat``.
        shape: the calibration batch ``(B, ...)``; ``B == len(seeds)``.
        steps: sampler steps of the schedule to fit.
        sigmas_init: the starting list, ``steps + 1`` decreasing values ending at 0 (e.g. from
            :func:`~mmdiff.core.spacing.sigmas_for`); its first value (``sigma_max``) is kept.
        seeds: one seed per calibration sample: the starting noises the fit sees.
        sampler: the sampler the schedule is for (a name or a sampler function).
        reference_steps: steps of the reference run (:func:`reference_sigmas` over ``sigmas_init``'s range).
        reference: the reference result ``shape`` when already computed (then ``reference_steps`` is unused).
        cond, guidance_scale, null_cond: conditions and guidance, as in :func:`~mmdiff.core.sample`.
        evaluations: the budget: at most this many few-step runs on the calibration batch.
        device: where to sample.
        progress: a tqdm bar over the evaluations (and one over the reference run).
        info: a dict to fill with ``error_before``, ``error_after`` (RMS distances to the reference on the calibration
            batch), ``evaluations`` (runs made) and ``reference_steps``.
        **sample_options: passed to :func:`~mmdiff.core.sample` (sampler options such as ``eta``, and
            ``guidance_rescale`` / ``guidance_interval``).

    Returns:
        The fitted list, float64 ``(steps + 1,)``, decreasing, starting at ``sigmas_init[0]`` and ending at 0. When no
        candidate beats ``sigmas_init`` (or ``steps == 1``, nothing to move), ``sigmas_init`` itself.
    """
    from scipy.optimize import minimize

    init = torch.as_tensor(sigmas_init, dtype=torch.float64).flatten()
    if len(init) != steps + 1:
        raise ValueError(f"tune_sigmas: sigmas_init has {len(init)} values, expected steps + 1 = {steps + 1}")
    if init[-1] != 0 or (init[:-1] <= 0).any() or (init[1:] >= init[:-1]).any():
        raise ValueError("tune_sigmas: sigmas_init must be strictly decreasing, positive, and end at 0")
    if len(seeds) != shape[0]:
        raise ValueError(f"tune_sigmas: {len(seeds)} seeds for a calibration batch of {shape[0]}")
    if evaluations < 1:
        raise ValueError(f"tune_sigmas: evaluations must be >= 1, got {evaluations}")
    seeds = [int(s) for s in seeds]

    def run(sigmas: Tensor, show: bool = False) -> Tensor:
        return sample(
            denoiser,
            shape,
            sampler,
            seed=seeds,
            sigmas=sigmas,
            cond=cond,
            guidance_scale=guidance_scale,
            null_cond=null_cond,
            device=device,
            progress=show,
            **sample_options,
        )

    if reference is None:
        reference = run(reference_sigmas(init, reference_steps), show=progress)
        if info is not None:
            info["reference_steps"] = reference_steps
    elif tuple(reference.shape) != tuple(shape):
        raise ValueError(f"tune_sigmas: reference has shape {tuple(reference.shape)}, expected {tuple(shape)}")

    sigma_max, sigma_floor = float(init[0]), float(init[-2])
    best = {"error": schedule_error(run(init), reference), "sigmas": init}
    before, count = best["error"], 1
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=evaluations, desc=f"tuning {steps} steps", leave=False)
        bar.update(1)

    class _Budget(Exception):
        pass

    def objective(theta: np.ndarray) -> float:
        nonlocal count
        if count >= evaluations:
            raise _Budget
        sigmas = sigmas_from_logits(sigma_max, sigma_floor, theta)
        error = schedule_error(run(sigmas), reference)
        count += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(rms=f"{min(error, best['error']):.4g}")
        if math.isfinite(error) and error < best["error"]:
            best.update(error=error, sigmas=sigmas)
        return error if math.isfinite(error) else math.inf

    try:
        if steps > 1 and evaluations > 1:
            minimize(
                objective,
                logits_from_sigmas(init, sigma_floor),
                method="Powell",
                options={"maxfev": evaluations - 1, "xtol": 1e-3, "ftol": 1e-4},
            )
    except _Budget:
        pass
    finally:
        if bar is not None:
            bar.close()
    if info is not None:
        info.update(error_before=before, error_after=best["error"], evaluations=count)
    return best["sigmas"]
