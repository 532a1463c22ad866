"""A Gaussian mixture with its exact denoiser: a diffusion problem with a known answer.

For data ``x0 ~ sum_k pi_k N(mu_k, s_k^2 I)`` and ``x = x0 + sigma * noise``, the noisy marginal is the mixture
``sum_k pi_k N(mu_k, (s_k^2 + sigma^2) I)`` and the ideal denoiser is analytic:

``E[x0 | x] = sum_k w_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k))``, ``w_k`` the posterior responsibilities.

Tests and ``benchmarks/samplers.py`` use it to check samplers against the true distribution, and
:meth:`GaussianMixture.exact_network` turns it into a perfect network of any parameterisation under any schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._tensor import append_dims
from .parameterization import check_parameterization, prediction_from
from .schedules import Schedule


class GaussianMixture:
    """Isotropic Gaussian mixture in ``dim`` dims: ``means (K, dim)``, ``stds (K,)``, ``weights (K,)``."""

    def __init__(self, means: Sequence[Sequence[float]] | Tensor, stds: Sequence[float] | Tensor, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.stds = torch.as_tensor(stds, dtype=torch.float64)
        k = self.means.shape[0]
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.stds.shape != (k,) or w.shape != (k,):
            raise ValueError(f"GaussianMixture: need stds and weights of shape ({k},)")
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @classmethod
    def ring(cls, components: int = 8, radius: float = 2.0, std: float = 0.15, dim: int = 2) -> GaussianMixture:
        """``components`` equal modes on a circle in the first two of ``dim`` dims (a classic 2-D test)."""
        angle = torch.arange(components, dtype=torch.float64) * 2 * math.pi / components
        means = torch.zeros(components, dim, dtype=torch.float64)
        means[:, 0], means[:, 1] = radius * angle.cos(), radius * angle.sin()
        return cls(means, torch.full((components,), std))

    @classmethod
    def uneven(cls, scale: float = 1.0, dim: int = 2) -> GaussianMixture:
        """Five modes of different widths (std 0.02 to 0.5 of ``scale``) and weights, spread so that the data has
        about ``scale`` standard deviation per dimension: sharp and broad modes in one problem, as real data has."""
        means = torch.zeros(5, dim, dtype=torch.float64)
        means[:, :2] = torch.tensor([[-1.2, -0.6], [1.1, -0.9], [0.1, 1.3], [-0.9, 1.0], [1.3, 0.8]]) / 1.2
        stds = torch.tensor([0.02, 0.06, 0.15, 0.3, 0.5])
        return cls(means * scale, stds * scale, weights=[0.3, 0.25, 0.2, 0.15, 0.1])

    def scaled(self, factor: float) -> GaussianMixture:
        """The same mixture with every length multiplied by ``factor`` (means and stds)."""
        return GaussianMixture(self.means * factor, self.stds * factor, self.weights)

    @property
    def std(self) -> float:
        """The data's standard deviation per dimension (``sigma_data``), averaged over dimensions."""
        mean = self.weights @ self.means  # (D,)
        second = self.weights @ (self.means**2).sum(1) + self.dim * (self.weights @ self.stds**2)
        return math.sqrt(max(second.item() - (mean**2).sum().item(), 0.0) / self.dim)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples ``(n, dim)``, float32."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.stds[comp, None] * noise).float()

    def denoise(self, x: Tensor, sigma: Tensor, **_: Tensor) -> Tensor:
        """The exact ``E[x0 | x0 + sigma * noise = x]`` for ``x (B, ...)`` whose trailing dims hold ``dim`` values."""
        flat = x.reshape(x.shape[0], math.prod(x.shape[1:])).double()  # (B, D)
        sig2 = sigma.double().reshape(-1, 1) ** 2  # (B, 1)
        mu, s2 = self.means.to(x.device), (self.stds**2).to(x.device)  # (K, D), (K,)
        var = s2[None] + sig2  # (B, K)
        dist2 = torch.cdist(flat, mu) ** 2  # (B, K)
        log_w = self.weights.log().to(x.device)[None] - 0.5 * dist2 / var - 0.5 * self.dim * var.log()
        resp = torch.softmax(log_w, dim=1)  # (B, K)
        shrink = s2[None] / var  # (B, K)
        # sum_k r_k (mu_k + shrink_k (x - mu_k)) = sum_k r_k (1 - shrink_k) mu_k + (sum_k r_k shrink_k) x
        x0 = (resp * (1 - shrink)) @ mu + (resp * shrink).sum(1, keepdim=True) * flat
        return x0.reshape(x.shape).to(x.dtype)

    def exact_network(self, schedule: Schedule, parameterization: str) -> nn.Module:
        """A perfect network ``net(x_t, t)`` predicting ``parameterization`` under ``schedule``."""
        return _ExactNetwork(self, schedule, check_parameterization(parameterization))


class _ExactNetwork(nn.Module):
    def __init__(self, mixture: GaussianMixture, schedule: Schedule, parameterization: str):
        super().__init__()
        self.mixture, self.schedule, self.parameterization = mixture, schedule, parameterization

    def forward(self, x_t: Tensor, t: Tensor, **_: Tensor) -> Tensor:
        sigma = torch.as_tensor(self.schedule.sigma_from_net_time(t.double().cpu())).to(x_t.device)  # (B,)
        alpha = append_dims(self.schedule.input_scale(sigma), x_t.ndim)
        s = alpha * append_dims(sigma, x_t.ndim)
        x = x_t.double() / alpha
        x0 = self.mixture.denoise(x, sigma)
        noise = (x - x0) / append_dims(sigma, x.ndim)
        return prediction_from(self.parameterization, x0, noise, alpha, s).float()


def known_answer_mixtures() -> dict[str, GaussianMixture]:
    """The known-answer problems the sampler tests and ``benchmarks/samplers.py`` share: one shape at three data
    scales (0.1, 1, 10), each with sharp and broad modes, and a second shape: a ring of eight equal sharp modes."""
    return {
        "uneven x0.1": GaussianMixture.uneven(0.1),
        "uneven x1": GaussianMixture.uneven(1.0),
        "uneven x10": GaussianMixture.uneven(10.0),
        "ring": GaussianMixture.ring(),
    }
