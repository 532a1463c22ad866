"""A sample made of two tensors (a clip and its soundtrack) packed flat: every sampler, guidance and masks unchanged."""

from __future__ import annotations

import pytest
import torch

from mmdiff.core import SAMPLERS, Packing, sample
from mmdiff.core.samplers import STOCHASTIC

SHAPES = {"video": (3, 4, 2, 2), "audio": (5, 8)}  # two parts of different ranks
MEANS = {"video": 0.5, "audio": -1.0}
STDS = {"video": 0.3, "audio": 0.8}


def _gaussian_denoiser(mean: float, std: float):
    """The exact denoiser of data N(mean, std^2) per element: E[x0 | x] = mean + std^2 / (std^2 + sigma^2) (x - mean)."""

    def denoise(x, sigma):
        s2 = (sigma.double() ** 2).reshape(-1, *([1] * (x.ndim - 1)))
        return (mean + std**2 / (std**2 + s2) * (x.double() - mean)).float()

    return denoise


def _packed_denoiser(packing: Packing):
    parts = {name: _gaussian_denoiser(MEANS[name], STDS[name]) for name in packing.shapes}

    def denoise(x, sigma):
        return packing.pack({name: parts[name](part, sigma) for name, part in packing.unpack(x).items()})

    return denoise


def test_pack_unpack_round_trip_and_order():
    packing = Packing(SHAPES)
    parts = {name: torch.randn(2, *shape) for name, shape in SHAPES.items()}
    x = packing.pack(parts)
    assert x.shape == (2, 3 * 4 * 2 * 2 + 5 * 8) == (2, packing.size)
    assert torch.equal(x[:, :48], parts["video"].reshape(2, -1))  # the order of the dict
    back = packing.unpack(x)
    assert all(torch.equal(back[name], parts[name]) for name in SHAPES)


def test_mask_marks_one_part():
    packing = Packing(SHAPES)
    mask = packing.mask({"video": 1.0})
    assert mask.shape == (1, packing.size)
    parts = packing.unpack(mask)
    assert parts["video"].eq(1).all() and parts["audio"].eq(0).all()
    frames = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 4, 1, 1)  # a per-frame mask broadcast over a part
    assert packing.unpack(packing.mask({"video": frames}))["video"][0, :, :2].eq(1).all()


def test_bad_parts_are_one_line_errors():
    packing = Packing(SHAPES)
    with pytest.raises(ValueError, match="expected the parts"):
        packing.pack({"video": torch.zeros(1, 3, 4, 2, 2)})
    with pytest.raises(ValueError, match="part 'audio' must be"):
        packing.pack({"video": torch.zeros(1, 3, 4, 2, 2), "audio": torch.zeros(1, 5, 9)})
    with pytest.raises(ValueError, match=r"expected \(B, 88\)"):
        packing.unpack(torch.zeros(2, 87))
    with pytest.raises(ValueError, match="unknown part"):
        packing.mask({"text": 1.0})
    with pytest.raises(ValueError, match="at least one"):
        Packing({})


class _Replay:
    """Noise for a packed run, and the same numbers for each part's own run: draw ``k`` is ``noises[k]``."""

    def __init__(self, noises, part=None, packing=None):
        self.noises, self.part, self.packing, self.k = noises, part, packing, 0

    def __call__(self, like):
        noise = self.noises[self.k]
        self.k += 1
        return noise if self.part is None else self.packing.unpack(noise)[self.part]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_samples_a_packed_state_as_each_part_alone(name):
    """Samplers use per-sample coefficients only, so a two-tensor state packed flat walks exactly the trajectory each
    tensor walks alone (same start, same noise): the core needs no multi-tensor special case."""
    packing = Packing(SHAPES)
    gen = torch.Generator().manual_seed(1)
    sigmas = torch.tensor([20.0, 5.0, 1.5, 0.4, 0.1, 0.0], dtype=torch.float64)
    x = torch.randn(3, packing.size, generator=gen) * 20
    noises = [torch.randn(3, packing.size, generator=gen) for _ in range(2 * len(sigmas))]
    run = SAMPLERS[name]
    packed = run(_packed_denoiser(packing), x, sigmas, noise=_Replay(noises))
    starts = packing.unpack(x)
    for part in SHAPES:
        alone = run(
            _gaussian_denoiser(MEANS[part], STDS[part]),
            starts[part],
            sigmas,
            noise=_Replay(noises, part, packing),
        )
        torch.testing.assert_close(packing.unpack(packed)[part], alone, rtol=1e-5, atol=1e-5)
    assert name in STOCHASTIC or torch.isfinite(packed).all()


def test_a_known_part_is_kept_exactly_and_the_other_is_generated():
    """Video-to-audio as the core sees it: a mask over the video part keeps it at ``init``; the audio part is sampled
    with guidance, from per-sample seeds."""
    packing = Packing(SHAPES)
    known = packing.pack({"video": torch.rand(2, *SHAPES["video"]), "audio": torch.zeros(2, *SHAPES["audio"])})
    base = _packed_denoiser(packing)

    def denoiser(x, sigma, label):
        return base(x, sigma) + 0.1 * label.reshape(-1, 1)

    def run(scale):
        return sample(
            denoiser,
            (2, packing.size),
            steps=8,
            seed=[3, 4],
            init=known,
            mask=packing.mask({"video": 1.0}),
            cond={"label": torch.ones(2)},
            null_cond={"label": 0.0},
            guidance_scale=scale,
        )

    guided, plain = packing.unpack(run(2.0)), packing.unpack(run(1.0))
    torch.testing.assert_close(guided["video"], packing.unpack(known)["video"])
    torch.testing.assert_close(plain["video"], packing.unpack(known)["video"])
    shift = (guided["audio"] - plain["audio"]).mean().item()  # guidance doubles the label's +0.1 on every estimate
    assert 0.1 < shift < 1.0, shift
    assert not torch.equal(guided["audio"][0], guided["audio"][1])  # two seeds, two samples
