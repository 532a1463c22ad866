"""Shared helpers for the tests."""

import math

import torch

from mmdiff.core import GaussianMixture


def mixture_for(shape, components: int = 3, seed: int = 0) -> GaussianMixture:
    """A random isotropic mixture whose samples have the per-sample shape ``shape[1:]``."""
    g = torch.Generator().manual_seed(seed)
    dim = math.prod(shape[1:])
    return GaussianMixture(torch.randn(components, dim, generator=g), torch.rand(components, generator=g) * 0.5 + 0.2)
