"""Parameterisations: what a network predicts, and the wrapper that turns any network into the denoiser contract.

A network sees ``x_t = alpha * x0 + s * noise`` where, for VE noise level ``sigma``, ``alpha = schedule.input_scale(sigma)``
and ``s = alpha * sigma``. It predicts one of

=========== ========================== ==============================================================
name        prediction                 back to x0
=========== ========================== ==============================================================
``epsilon`` ``noise``                  ``(x_t - s * eps) / alpha``           (Ho et al. 2020)
``x0``      ``x0``                     itself
``v``       ``alpha * noise - s * x0`` ``(alpha * x_t - s * v) / (alpha^2 + s^2)`` (Salimans & Ho 2022)
``flow``    ``noise - x0``             ``(x_t - s * u) / (alpha + s)``        (rectified flow velocity, Liu et al. 2022)
=========== ========================== ==============================================================

The formulas hold for any ``alpha, s`` (VP, flow, EDM), so any pairing of schedule and parameterisation works.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ._tensor import append_dims
from .schedules import Schedule

Parameterization = Literal["epsilon", "x0", "v", "flow"]
PARAMETERIZATIONS: tuple[str, ...] = ("epsilon", "x0", "v", "flow")


def check_parameterization(name: str) -> str:
    """Return ``name`` if it is a known parameterisation, else raise naming the allowed values."""
    if name not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {name!r}; expected one of {', '.join(PARAMETERIZATIONS)}")
    return name


def prediction_from(kind: str, x0: Tensor, noise: Tensor, alpha: Tensor, s: Tensor) -> Tensor:
    """The prediction of type ``kind`` for clean data ``x0`` and noise ``noise`` (the training target).

    ``alpha`` and ``s`` broadcast against ``x0`` (shape ``(B, 1, ..., 1)``).
    """
    if kind == "epsilon":
        return noise
    if kind == "x0":
        return x0
    if kind == "v":
        return alpha * noise - s * x0
    if kind == "flow":
        return noise - x0
    raise ValueError(check_parameterization(kind))


def x0_from_prediction(kind: str, pred: Tensor, x_t: Tensor, alpha: Tensor, s: Tensor) -> Tensor:
    """Recover ``x0`` from a prediction of type ``kind`` at the network input ``x_t`` (see the table above)."""
    if kind == "epsilon":
        return (x_t - s * pred) / alpha
    if kind == "x0":
        return pred
    if kind == "v":
        return (alpha * x_t - s * pred) / (alpha**2 + s**2)
    if kind == "flow":
        return (x_t - s * pred) / (alpha + s)
    raise ValueError(check_parameterization(kind))


def convert_prediction(pred: Tensor, source: str, target: str, x_t: Tensor, alpha: Tensor, s: Tensor) -> Tensor:
    """Convert a prediction between any two parameterisations at the same ``x_t`` (needs ``s > 0``)."""
    x0 = x0_from_prediction(source, pred, x_t, alpha, s)
    noise = (x_t - alpha * x0) / s
    return prediction_from(target, x0, noise, alpha, s)


def x0_error_scale_sq(kind: str, alpha: Tensor, s: Tensor) -> Tensor:
    """``k^2`` with ``|pred_err|^2 = k^2 |x0_err|^2`` for a prediction of type ``kind``.

    It converts a loss weighting stated in x0 space (min-SNR and friends) into the weighting of the plain MSE on the
    network's own output. ``epsilon``: SNR; ``v``: ``(alpha^2+s^2)^2/s^2`` (SNR + 1 for VP); ``flow``: ``((alpha+s)/s)^2``.
    """
    if kind == "epsilon":
        return (alpha / s) ** 2
    if kind == "x0":
        return torch.ones_like(alpha)
    if kind == "v":
        return (alpha**2 + s**2) ** 2 / s**2
    if kind == "flow":
        return ((alpha + s) / s) ** 2
    raise ValueError(check_parameterization(kind))


class NetworkDenoiser(nn.Module):
    """Wrap ``net(x_t, t, **cond)`` trained under ``schedule`` and ``parameterization`` as ``denoiser(x, sigma, **cond)``.

    ``x`` is in the VE frame (``x0 + sigma * noise``), ``sigma`` is ``(B,)``; the result is ``x0_hat`` in float32,
    whatever dtype the network runs in. The network gets ``x_t = alpha * x`` cast to its parameters' dtype.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, parameterization: str = "epsilon"):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.parameterization = check_parameterization(parameterization)

    def scales(self, sigma: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
        """``(alpha, s)`` for ``(B,)`` sigmas, broadcastable against a batch of ``ndim`` dims."""
        sigma = sigma.float()
        alpha = self.schedule.input_scale(sigma).float()
        return append_dims(alpha, ndim), append_dims(alpha * sigma, ndim)

    def _net_dtype(self) -> torch.dtype | None:
        param = next(iter(self.net.parameters()), None) if isinstance(self.net, nn.Module) else None
        return param.dtype if param is not None else None

    def forward(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        sigma = sigma.to(device=x.device, dtype=torch.float32)
        alpha, s = self.scales(sigma, x.ndim)
        x_t = x.float() * alpha  # (B, ...)
        dtype = self._net_dtype()
        net_in = x_t.to(dtype) if dtype is not None and dtype.is_floating_point else x_t
        pred = self.net(net_in, self.schedule.net_time(sigma).to(x.device), **cond).float()
        return x0_from_prediction(self.parameterization, pred, x_t, alpha, s)
