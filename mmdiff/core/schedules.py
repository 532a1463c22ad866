"""Noise schedules, all seen through one frame: the variance-exploding (VE) frame ``x = x0 + sigma * noise``.

A schedule tells three things about the network it trained, each a function of the VE noise level ``sigma``:

* ``input_scale(sigma)`` -- ``alpha``: the network saw ``x_t = alpha * x`` (VP: ``1/sqrt(1+sigma^2)``, rectified flow:
  ``1/(1+sigma)``, EDM: ``c_in = 1/sqrt(sigma^2+sigma_data^2)``);
* ``net_time(sigma)`` -- the time value the network is conditioned on (a DDPM timestep index, a flow time, EDM's
  ``log(sigma)/4``);
* ``sigma_from_net_time(t)`` -- the inverse of ``net_time``;
* ``sigma_at(u)`` -- the noise level at unit time ``u`` in ``[0, 1]`` (increasing), used by training to draw noise
  levels and by the uniform inference spacings.

Samplers only ever see VE sigmas, so every sampler works for every schedule (Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", section 2). Tables are kept in float64 (float32 on devices
without float64, such as Apple's ``mps``), and every method computes on the device of its input, so a schedule never
moves tensors between devices nor waits for the accelerator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

#: Floor on alpha-bar for zero-terminal-SNR tables: a terminal alpha-bar of exactly 0 means sigma = inf, which no
#: VE-frame sampler can start from. Same value diffusers uses for the Euler family (sigma_max ~ 4096).
ZERO_SNR_ALPHA_BAR_FLOOR = 2.0**-24


def precise_dtype(device: torch.device | str) -> torch.dtype:
    """float64 for schedule maths, or float32 on devices that have no float64 (``mps``)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _precise(x: Tensor | float | Sequence[float]) -> Tensor:
    """``x`` as a tensor in :func:`precise_dtype` of its device (Python numbers land on the CPU)."""
    device = x.device if isinstance(x, Tensor) else torch.device("cpu")
    return torch.as_tensor(x, dtype=precise_dtype(device), device=device)


@runtime_checkable
class Schedule(Protocol):
    """What the core needs from a noise schedule (see the module docstring)."""

    sigma_min: float
    sigma_max: float

    def sigma_at(self, u: Tensor) -> Tensor: ...

    def net_time(self, sigma: Tensor) -> Tensor: ...

    def input_scale(self, sigma: Tensor) -> Tensor: ...

    def sigma_from_net_time(self, t: Tensor) -> Tensor: ...


class VPSchedule:
    """A discrete variance-preserving (DDPM) schedule given by its betas.

    ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` with ``abar_t = prod(1 - beta)``; in the VE frame
    ``sigma_t = sqrt((1 - abar_t) / abar_t)`` and ``alpha = sqrt(abar_t) = 1 / sqrt(1 + sigma^2)``. The network's time
    input is the (possibly fractional) timestep index, found by linear interpolation in log-sigma over the table
    (as k-diffusion's ``DiscreteSchedule`` does), so any sigma a sampler asks for maps to a time the network knows.
    """

    def __init__(self, betas: Sequence[float] | Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError(
                f"VPSchedule: betas must be a 1-D table of at least 2 entries, got shape {tuple(betas.shape)}"
            )
        if (betas <= 0).any() or (betas > 1).any():
            raise ValueError("VPSchedule: every beta must lie in (0, 1]")
        self.betas = betas
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod = torch.where(
            alphas_cumprod > 0, alphas_cumprod, torch.full_like(alphas_cumprod, ZERO_SNR_ALPHA_BAR_FLOOR)
        )
        self.alphas_cumprod = alphas_cumprod  # (T,) float64
        self.sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()  # (T,) increasing
        self.log_sigmas = self.sigmas.log()
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])
        self._log_sigma_range = (float(self.log_sigmas[0]), float(self.log_sigmas[-1]))
        self._log_sigma_tables: dict[torch.device, Tensor] = {torch.device("cpu"): self.log_sigmas}

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def __repr__(self) -> str:
        return f"VPSchedule(T={self.num_timesteps}, sigma_min={self.sigma_min:.4g}, sigma_max={self.sigma_max:.4g})"

    def log_sigma_table(self, device: torch.device | str) -> Tensor:
        """The ``(T,)`` log-sigma table on ``device`` in :func:`precise_dtype`, copied there once and then reused."""
        device = torch.device(device)
        table = self._log_sigma_tables.get(device)
        if table is None:
            table = self._log_sigma_tables[device] = self.log_sigmas.to(device=device, dtype=precise_dtype(device))
        return table

    def sigma_at_timestep(self, t: Tensor) -> Tensor:
        """sigma at fractional timestep ``t`` in ``[0, T-1]`` (log-linear interpolation), on ``t``'s device."""
        t = _precise(t).clamp(0, self.num_timesteps - 1)
        table = self.log_sigma_table(t.device)
        low = t.floor().long().clamp(max=self.num_timesteps - 2)
        frac = t - low
        log_sigma = (1 - frac) * table[low] + frac * table[low + 1]
        return log_sigma.exp()

    def timestep_of_sigma(self, sigma: Tensor) -> Tensor:
        """Inverse of :meth:`sigma_at_timestep`, on ``sigma``'s device; sigmas outside the table clamp to its ends.

        Returns ``sigma``'s dtype when it is floating point, else float32.
        """
        sigma = torch.as_tensor(sigma)
        dtype = sigma.dtype if sigma.dtype.is_floating_point else torch.float32
        table = self.log_sigma_table(sigma.device)
        log_sigma = _precise(sigma).log().clamp(*self._log_sigma_range)
        low = (torch.searchsorted(table, log_sigma, right=True) - 1).clamp(0, self.num_timesteps - 2)
        lo, hi = table[low], table[low + 1]
        frac = (log_sigma - lo) / (hi - lo)
        return (low + frac).to(dtype)

    def sigma_at(self, u: Tensor) -> Tensor:
        return self.sigma_at_timestep(_precise(u) * (self.num_timesteps - 1))

    def net_time(self, sigma: Tensor) -> Tensor:
        return self.timestep_of_sigma(sigma)

    def sigma_from_net_time(self, t: Tensor) -> Tensor:
        return self.sigma_at_timestep(t)

    def input_scale(self, sigma: Tensor) -> Tensor:
        return (1 + sigma**2).rsqrt()


def _betas_linear(num_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Rescale betas so the last timestep has zero SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample
    Steps are Flawed", Algorithm 1): shift sqrt(abar) so its last value is 0, scale so its first is unchanged."""
    betas = torch.as_tensor(betas, dtype=torch.float64)
    sqrt_abar = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_abar[0].clone(), sqrt_abar[-1].clone()
    sqrt_abar = (sqrt_abar - last) * first / (first - last)
    abar = sqrt_abar**2
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return 1 - alphas


def vp_linear(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, zero_terminal_snr: bool = False
) -> VPSchedule:
    """DDPM's linear betas (Ho et al. 2020)."""
    betas = _betas_linear(num_timesteps, beta_start, beta_end)
    return VPSchedule(rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas)


def vp_scaled_linear(
    num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012, zero_terminal_snr: bool = False
) -> VPSchedule:
    """Linear in sqrt(beta) (latent diffusion / Stable Diffusion)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    return VPSchedule(rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas)


def vp_cosine(
    num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999, zero_terminal_snr: bool = False
) -> VPSchedule:
    """Cosine abar (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17), betas clipped at ``max_beta``."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return VPSchedule(rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas)


def vp_sigmoid(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, zero_terminal_snr: bool = False
) -> VPSchedule:
    """Betas following a sigmoid from ``beta_start`` to ``beta_end`` (as diffusers' DDPM ``"sigmoid"`` schedule, from
    GeoDiff, Xu et al. 2022)."""
    ramp = torch.linspace(-6, 6, num_timesteps, dtype=torch.float64)
    betas = torch.sigmoid(ramp) * (beta_end - beta_start) + beta_start
    return VPSchedule(rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas)


class EDMSchedule:
    """The continuous VE schedule of EDM (Karras et al. 2022, Table 1): the network sees
    ``c_in * x`` with ``c_in = 1/sqrt(sigma^2 + sigma_data^2)`` and time ``c_noise = log(sigma)/4``; unit time maps to
    sigma through the Karras ramp with exponent ``rho``."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5, rho: float = 7.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"EDMSchedule: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.sigma_data, self.rho = float(sigma_min), float(sigma_max), sigma_data, rho

    def __repr__(self) -> str:
        return f"EDMSchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, sigma_data={self.sigma_data})"

    def sigma_at(self, u: Tensor) -> Tensor:
        u = _precise(u)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (lo + u * (hi - lo)) ** self.rho

    def net_time(self, sigma: Tensor) -> Tensor:
        return sigma.log() / 4

    def sigma_from_net_time(self, t: Tensor) -> Tensor:
        return (torch.as_tensor(t) * 4).exp()

    def input_scale(self, sigma: Tensor) -> Tensor:
        return (sigma**2 + self.sigma_data**2).rsqrt()


class FlowSchedule:
    """Rectified flow / flow matching (Liu et al. 2022; Lipman et al. 2022): ``x_t = (1 - t) x0 + t noise``.

    In the VE frame ``sigma = t / (1 - t)`` and ``alpha = 1 - t = 1 / (1 + sigma)``. ``t = 1`` is sigma = inf, so the
    schedule stops at ``sigma_max`` (default 1000, t ~= 0.999). ``shift`` is SD3's resolution shift
    ``u' = shift u / (1 + (shift - 1) u)`` (Esser et al. 2024), applied to unit time before it is mapped
    onto ``[t(sigma_min), t(sigma_max)]``. The network's time input is
    ``t * time_scale`` (diffusers' flow models use ``time_scale=1000``).
    """

    def __init__(self, shift: float = 1.0, sigma_min: float = 1e-3, sigma_max: float = 1000.0, time_scale: float = 1.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"FlowSchedule: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        if shift <= 0:
            raise ValueError(f"FlowSchedule: shift must be > 0, got {shift}")
        self.shift, self.time_scale = shift, time_scale
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def __repr__(self) -> str:
        return f"FlowSchedule(shift={self.shift}, sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"

    def sigma_at(self, u: Tensor) -> Tensor:
        u = _precise(u)
        shifted = self.shift * u / (1 + (self.shift - 1) * u)  # maps [0, 1] onto itself
        t_lo, t_hi = self.sigma_min / (1 + self.sigma_min), self.sigma_max / (1 + self.sigma_max)
        t = t_lo + shifted * (t_hi - t_lo)
        return t / (1 - t)

    def net_time(self, sigma: Tensor) -> Tensor:
        return sigma / (1 + sigma) * self.time_scale

    def sigma_from_net_time(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t) / self.time_scale
        return t / (1 - t)

    def input_scale(self, sigma: Tensor) -> Tensor:
        return 1 / (1 + sigma)
