"""Parameterisations: what a network predicts, and how to get back to x0 (see :mod:`.model` for the wrapper).

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

from typing import Literal

import torch
from torch import Tensor

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
