"""Seeded Gaussian noise for samplers.

A :class:`NoiseSource` is the only randomness a sampler uses; it is passed in explicitly (no global RNG state).
With a list of per-sample seeds each sample draws from its own generator, so sample ``i`` of a batch is the same
as that seed generated alone: batches can be split or merged without changing any result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .schedules import precise_dtype

Seed = int | Sequence[int] | torch.Generator | None
Generators = torch.Generator | Sequence[torch.Generator] | None


def draw(kind: str, shape: Sequence[int], generator: Generators, device, dtype=torch.float32) -> torch.Tensor:
    """``torch.randn`` (``kind="normal"``) or ``torch.rand`` (``"uniform"``) of ``shape = (B, ...)`` on ``device``.

    ``generator`` may be one generator, ``None`` (the global RNG), or a list of ``B`` generators, one per sample, in
    which case sample ``i`` is drawn from generator ``i`` alone (batch-invariant randomness). Draws happen on each
    generator's own device and are moved to ``device``. A float64 draw for a device without float64 (``mps``) is
    made in float32 (:func:`~mmdiff.core.schedules.precise_dtype`).
    """
    fn = torch.randn if kind == "normal" else torch.rand
    device = torch.device(device)
    if dtype == torch.float64:
        dtype = precise_dtype(device)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return fn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} per-sample generators for a batch of {shape[0]}")
    item = tuple(shape[1:])
    return torch.stack([fn(item, generator=g, device=g.device, dtype=dtype).to(device) for g in generator])


NoisePrior = Callable[[Tensor], Tensor]


def _check_share(share: float) -> None:
    if not 0.0 <= share < 1.0:
        raise ValueError(f"noise share is a correlation in [0, 1), got {share}")


def shared_noise(noise: Tensor, dims: Sequence[int], share: float) -> Tensor:
    """White noise ``(B, ...)`` -> noise whose elements keep unit variance and correlate with coefficient ``share``
    along ``dims`` (every pair of positions that differ only in ``dims``): the mixed noise prior of PYoCo (Ge et al.
    2023, "Preserve Your Own Correlation: A Noise Prior for Video Diffusion Models"), where the frames of a clip share
    part of their noise, as they share most of their content.

    A fixed linear map of the input, ``a noise + c mean_dims(noise)`` with ``a^2 = 1 - share`` and
    ``2ac + c^2 = share n`` (``n`` positions along ``dims``), so it draws nothing: per-sample seeds give the same
    noise as before, only mixed. The probability-flow ODE in the denoiser form ``dx/dsigma = (x - D(x, sigma)) /
    sigma`` holds for any fixed noise covariance, so deterministic samplers need nothing but a start drawn from the
    same prior (``sample(noise_prior=...)``); stochastic ones get their fresh noise from it too.
    """
    _check_share(share)
    if share == 0.0:
        return noise
    n = math.prod(noise.shape[d] for d in dims)
    a = math.sqrt(1.0 - share)
    c = math.sqrt(a * a + share * n) - a
    return a * noise + c * noise.mean(dim=tuple(dims), keepdim=True)


class SharedNoise:
    """:func:`shared_noise` over fixed ``dims`` with a fixed ``share``, as a noise prior callable."""

    def __init__(self, dims: Sequence[int], share: float):
        _check_share(share)
        self.dims, self.share = tuple(int(d) for d in dims), float(share)

    def __call__(self, noise: Tensor) -> Tensor:
        return shared_noise(noise, self.dims, self.share)

    def __repr__(self) -> str:
        return f"SharedNoise(dims={self.dims}, share={self.share})"


class NoiseSource:
    """Draws standard normal noise shaped like a batch ``(B, ...)``, in float32.

    ``seed`` may be a list of ``B`` ints (one generator per sample: batch-invariant), one int (one generator for
    the whole batch: reproducible for the same batch size), a ``torch.Generator``, or ``None`` (the global RNG).
    ``prior`` (e.g. :class:`SharedNoise`) maps each draw: the noise a model was trained with.
    """

    def __init__(
        self, seed: Seed, batch_size: int, device: torch.device | str = "cpu", prior: NoisePrior | None = None
    ):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.prior = prior
        self.generators: list[torch.Generator] | None = None
        self.generator: torch.Generator | None = None
        if isinstance(seed, torch.Generator):
            self.generator = seed
        elif isinstance(seed, int):
            self.generator = torch.Generator(self.device).manual_seed(seed)
        elif seed is not None:
            seeds = [int(s) for s in seed]
            if len(seeds) != batch_size:
                raise ValueError(f"seed list has {len(seeds)} entries but the batch has {batch_size} samples")
            self.generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]

    def __call__(self, like: Tensor) -> Tensor:
        """Noise of ``like``'s shape on this source's device, float32."""
        if like.shape[0] != self.batch_size:
            raise ValueError(f"noise asked for batch {like.shape[0]}, source built for {self.batch_size}")
        noise = draw("normal", like.shape, self.generators or self.generator, self.device)
        return noise if self.prior is None else self.prior(noise)
