"""Distances between sample sets, for checking samplers and models against known distributions."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

log = logging.getLogger("mmdiff.metrics")


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = 256, seed: int = 0, p: int = 1) -> float:
    """Sliced p-Wasserstein distance between point sets ``a (N, D)`` and ``b (M, D)`` (Rabin et al. 2011).

    Both sets are projected on ``projections`` random unit directions (fixed by ``seed``); the 1-D W2 distance of
    each projection is computed from matched quantiles and averaged over directions: ``(mean |qa - qb|^p)^(1/p)``.
    ``p = 1`` (the default) is linear in misplaced mass, so its sampling noise is far lower than W2's on
    multi-modal data, where a small imbalance between distant modes dominates W2.
    """
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sliced_wasserstein: point dims differ, {a.shape[1]} vs {b.shape[1]}")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, pb = (a.cpu() @ dirs).sort(dim=0).values, (b.cpu() @ dirs).sort(dim=0).values  # (N, P), (M, P)
    n = min(len(pa), len(pb))
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n

    def quantiles(p: Tensor) -> Tensor:
        pos = q * len(p) - 0.5
        lo = pos.floor().clamp(0, len(p) - 1).long()
        hi = (lo + 1).clamp(max=len(p) - 1)
        frac = (pos - lo).clamp(0, 1)[:, None]
        return p[lo] * (1 - frac) + p[hi] * frac

    return float(((quantiles(pa) - quantiles(pb)).abs() ** p).mean() ** (1 / p))


def frechet_size_warning(n: int, dim: int) -> str | None:
    """One line saying why a Fréchet distance from ``n`` samples of ``dim`` features is unreliable; None if n > dim.

    A covariance estimated from ``n`` samples has rank at most ``n - 1``, so for ``dim`` features it is full rank only
    when ``n > dim``; below that the trace terms are dominated by which few samples were drawn, and the distance grows
    or shrinks with ``n`` itself. Numbers from different ``n`` are then not comparable.
    """
    if n > dim:
        return None
    return (
        f"Fréchet distance from n={n} samples of {dim} features: a covariance of {dim} features needs more than {dim} "
        f"samples to be full rank, so this number is mostly sampling noise; use n > {dim}, and compare runs at equal n"
    )


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6, warn: bool = True) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, F) and (N_b, F), as in FID (Heusel 2017).

    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))``. Both sets are first standardised with the mean and std
    of the reference set ``b``, so that features on different scales (Hz, dB, shares) weigh alike and the distance
    is in units of the reference's spread; constant reference columns are only centred. ``eps * I`` is added to both
    covariances (small sets give singular ones), and the real part of :func:`scipy.linalg.sqrtm` is kept (a warning
    if its imaginary part is not negligible). Needs at least 2 rows per set; with ``warn``, fewer rows than
    features + 1 in either set log :func:`frechet_size_warning` on the ``mmdiff.metrics`` logger (callers that
    compute several distances from one set pass ``warn=False`` and log it once).
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features: need two (N, F) arrays with the same F, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"features: need at least 2 rows per set to fit a covariance, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features: contain NaN or inf")
    if warn and (message := frechet_size_warning(min(len(a), len(b)), a.shape[1])):
        log.warning(message)
    mean, std = b.mean(axis=0), b.std(axis=0)  # (F,) reference statistics
    std = np.where(std > 1e-12, std, 1.0)
    a, b = (a - mean) / std, (b - mean) / std
    ridge = eps * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge  # (F, F)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):
        imag = np.abs(covmean.imag).max()
        if imag > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            warnings.warn(
                f"frechet_distance: sqrtm has an imaginary part of {imag:.3g}; keeping the real part", stacklevel=2
            )
        covmean = covmean.real
    diff = a.mean(axis=0) - b.mean(axis=0)
    distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    return float(max(distance, 0.0))
