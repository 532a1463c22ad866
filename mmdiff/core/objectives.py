"""Training objective: the per-sample denoising loss for any schedule and parameterisation.

One training step draws a noise level per sample, noises the data, asks the network for its prediction and returns
the weighted MSE against the matching target (:func:`~mmdiff.core.parameterization.prediction_from`).

Noise levels are drawn by small callables ``(batch, schedule, generator, device) -> sigma (B,)``:
:class:`UniformTime`, :class:`LogitNormalTime` (SD3, Esser et al. 2024) and :class:`LogNormalSigma` (EDM's
``ln sigma ~ N(P_mean, P_std)``).

Weightings are stated in x0 space as a function of ``SNR = 1/sigma^2`` and converted to the network's own output
with :func:`~mmdiff.core.parameterization.x0_error_scale_sq`:

* ``uniform``: plain MSE on the network output (no reweighting);
* ``min_snr``: ``min(SNR, gamma)`` (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting");
* ``soft_min_snr``: ``SNR * gamma / (SNR + gamma)``, the smooth version from Crowson et al. 2024 (Hourglass
  Diffusion Transformers, where ``gamma = sigma_data^2``).

``snr_floor`` raises either SNR weighting to at least that value: with ``snr_floor=1`` min-SNR becomes
``min(max(SNR, 1), gamma)``, Salimans & Ho's "truncated SNR" weighting (2022, Progressive Distillation) capped at
``gamma``. Min-SNR alone weighs an x0 error at sigma 10 1/100 of one at sigma 1, so what a clip decides at high noise
(where its objects go, how fast a melody moves) is learnt slowly; the floor keeps min-SNR's low-noise weight.

A per-sample ``noise_shift`` (from the adapter) multiplies the drawn ``sigma``: SD3's timestep shift, per sample.
A ``known_mask`` (from the adapter: the parts given to the network as known, which the sampler keeps exactly) leaves
those parts out of the loss: each sample's error is the mean over its unknown elements, so a sample given half of its
clip trains the other half at full weight instead of half.

Offset noise (Guttenberg 2023) adds a per-sample, per-channel constant to the noise, for any rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._tensor import append_dims, mean_over_sample
from .model import DiffusionModel
from .noise import Generators, NoisePrior, draw
from .parameterization import x0_error_scale_sq
from .schedules import Schedule, precise_dtype

WEIGHTINGS = ("uniform", "min_snr", "soft_min_snr")


class UniformTime:
    """Unit time ``u ~ U(0, 1)`` mapped through ``schedule.sigma_at`` (DDPM's uniform timesteps on a VP table)."""

    def __call__(self, batch: int, schedule: Schedule, generator=None, device="cpu") -> Tensor:
        return schedule.sigma_at(draw("uniform", (batch,), generator, device, torch.float64)).float()


class LogitNormalTime:
    """``u = sigmoid(n)``, ``n ~ N(mean, std)``: concentrates training on middle noise levels (Esser et al. 2024)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean, self.std = mean, std

    def __call__(self, batch: int, schedule: Schedule, generator=None, device="cpu") -> Tensor:
        n = draw("normal", (batch,), generator, device, torch.float64) * self.std + self.mean
        return schedule.sigma_at(torch.sigmoid(n)).float()


class LogNormalSigma:
    """``ln sigma ~ N(mean, std)`` clamped to the schedule's range (EDM, Karras et al. 2022: P_mean=-1.2, P_std=1.2)."""

    def __init__(self, mean: float = -1.2, std: float = 1.2):
        self.mean, self.std = mean, std

    def __call__(self, batch: int, schedule: Schedule, generator=None, device="cpu") -> Tensor:
        sigma = (draw("normal", (batch,), generator, device, torch.float64) * self.std + self.mean).exp()
        return sigma.clamp(schedule.sigma_min, schedule.sigma_max).float()


def x0_weight(weighting: str, sigma: Tensor, gamma: float, floor: float = 0.0) -> Tensor:
    """The x0-space loss weight of ``weighting`` at noise levels ``sigma`` (``SNR = 1/sigma^2``), at least ``floor``."""
    snr = sigma.to(precise_dtype(sigma.device)).pow(-2)
    if weighting == "min_snr":
        weight = snr.clamp(max=gamma)
    elif weighting == "soft_min_snr":
        weight = snr * gamma / (snr + gamma)
    else:
        raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
    return weight.clamp(min=floor).float()


def offset_noise(x: Tensor, strength: float, generator=None) -> Tensor:
    """Standard noise shaped like ``x (B, C, ...)`` plus ``strength`` times a per-sample, per-channel constant."""
    noise = draw("normal", x.shape, generator, x.device)
    if strength > 0:
        const_shape = (*x.shape[:2], *([1] * (x.ndim - 2)))  # (B, C, 1, ..., 1)
        noise = noise + strength * draw("normal", const_shape, generator, x.device)
    return noise


class DiffusionLoss:
    """Per-sample training loss ``(B,)`` for a network ``net(x_t, t, **cond)`` under a :class:`DiffusionModel`.

    The model (schedule + parameterisation) says what the network's input and output mean; the same object turns the
    trained network into a denoiser for sampling (:meth:`DiffusionModel.denoiser`), so training and generation read
    one definition.

    Args:
        model: the schedule and parameterisation the network is trained under.
        noise_level: a noise-level sampler (default :class:`UniformTime`).
        weighting: ``uniform``, ``min_snr`` or ``soft_min_snr`` (see the module docstring).
        snr_gamma: the ``gamma`` of the SNR weightings.
        snr_floor: the least x0-space weight of the SNR weightings (0: none; 1: truncated SNR below ``gamma``).
        offset_noise: strength of offset noise (0 disables it).
    """

    def __init__(
        self,
        model: DiffusionModel,
        noise_level: Any = None,
        weighting: str = "uniform",
        snr_gamma: float = 5.0,
        snr_floor: float = 0.0,
        offset_noise: float = 0.0,
    ):
        if not isinstance(model, DiffusionModel):
            raise TypeError(
                f"DiffusionLoss: model must be a DiffusionModel(schedule, parameterization), got {type(model).__name__}"
            )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")
        if snr_floor < 0 or (snr_floor > 0 and weighting == "uniform"):
            raise ValueError(
                f"objective.snr_floor={snr_floor} needs weighting min_snr or soft_min_snr and a value >= 0 "
                f"(got weighting {weighting!r})"
            )
        self.model = model
        self.noise_level = noise_level if noise_level is not None else UniformTime()
        self.weighting, self.snr_gamma, self.snr_floor = weighting, snr_gamma, snr_floor
        self.offset_noise = offset_noise

    @property
    def schedule(self) -> Schedule:
        return self.model.schedule

    @property
    def parameterization(self) -> str:
        return self.model.parameterization

    def weight(self, sigma: Tensor, alpha: Tensor, s: Tensor) -> Tensor:
        """Per-sample weight ``(B,)`` of the MSE on the network output (``alpha``, ``s``: ``(B,)``)."""
        if self.weighting == "uniform":
            return torch.ones_like(sigma)
        k2 = x0_error_scale_sq(self.parameterization, alpha, s)
        return x0_weight(self.weighting, sigma, self.snr_gamma, self.snr_floor) / k2

    def __call__(
        self,
        net: nn.Module,
        x0: Tensor,
        generator: Generators = None,
        noise_shift: Tensor | None = None,
        known_mask: Tensor | None = None,
        noise_prior: NoisePrior | None = None,
        **cond: Any,
    ) -> Tensor:
        """Loss per sample ``(B,)`` for clean data ``x0 (B, ...)`` of any rank.

        ``generator`` may be a list of per-sample generators: then each sample's noise level and noise depend on its
        own generator only, so a batch split across processes trains exactly like the whole batch in one.
        ``noise_shift (B,)``, when an adapter gives it, multiplies each sample's drawn ``sigma`` (clamped to the
        schedule's range): SD3's timestep shift (Esser et al. 2024; for rectified flow ``t -> s t / (1 + (s - 1) t)``
        is exactly ``sigma -> s sigma`` in this VE frame) chosen per sample, so samples of one task can train at
        higher noise than the rest (see :class:`~mmdiff.modalities.av.adapter.AudioVideoAdapter`).
        ``known_mask``, broadcastable to ``x0``, is 1 on the parts an adapter gave the network as known (video's
        known frames, a joint model's given track): generation keeps those exactly, so they are left out of the
        loss, and each sample's error is the mean over the rest (a sample with nothing unknown scores 0).
        ``noise_prior`` (from the adapter, e.g. :class:`~mmdiff.core.noise.SharedNoise`: video frames that share part
        of their noise) maps the drawn noise; generation must draw from the same prior (``sample(noise_prior=)``).
        """
        x0 = x0.float()
        sigma = self.noise_level(x0.shape[0], self.schedule, generator, x0.device)  # (B,)
        if noise_shift is not None:
            sigma = (sigma * noise_shift.to(sigma)).clamp(self.schedule.sigma_min, self.schedule.sigma_max)
        noise = offset_noise(x0, self.offset_noise, generator)
        if noise_prior is not None:
            noise = noise_prior(noise)
        x = x0 + append_dims(sigma, x0.ndim) * noise  # the VE frame, as the samplers see it
        pred, _, alpha, s = self.model.predict(net, x, sigma, **cond)  # alpha, s: (B, 1, ..., 1)
        target = self.model.target(x0, noise, alpha, s)
        error = (pred - target) ** 2  # (B, ...)
        if known_mask is None:
            per_sample = mean_over_sample(error)
        else:
            unknown = 1 - known_mask.to(error).expand_as(error)  # (B, ...): 1 where the loss counts
            per_sample = mean_over_sample(error * unknown) / mean_over_sample(unknown).clamp(min=1e-12)
        return self.weight(sigma, alpha.flatten(), s.flatten()) * per_sample
