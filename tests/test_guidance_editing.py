import pytest
import torch
from _helpers import mixture_for

from mmdiff.core import classifier_free_guidance, drop_conditions, sample
from mmdiff.core.guidance import broadcast_null


class LabelDenoiser:
    """Denoiser of a two-class 1-D problem: class 0 at -1, class 1 at +1, null (label 2) the mixture of both."""

    def __init__(self):
        self.calls = []
        self.mixtures = {0: mixture_for((1, 4), 1, seed=0), 1: mixture_for((1, 4), 1, seed=1)}
        self.mixtures[0].means[:] = -1.0
        self.mixtures[1].means[:] = 1.0

    def __call__(self, x, sigma, label):
        self.calls.append(len(x))
        out = torch.empty_like(x)
        for k, m in self.mixtures.items():
            rows = label == k
            out[rows] = m.denoise(x[rows], sigma[rows])
        rows = label == 2
        out[rows] = 0.5 * (
            self.mixtures[0].denoise(x[rows], sigma[rows]) + self.mixtures[1].denoise(x[rows], sigma[rows])
        )
        return out


def _inputs(b=6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 4, generator=g) * 3, torch.full((b,), 2.0), torch.tensor([0, 1] * (b // 2))


def test_cfg_scales_and_one_batched_pass():
    den = LabelDenoiser()
    x, sigma, label = _inputs()
    cond = den(x, sigma, label=label)
    null = den(x, sigma, label=torch.full_like(label, 2))
    den.calls.clear()
    for scale, expected in [(1.0, cond), (0.0, null), (3.0, null + 3 * (cond - null))]:
        guided = classifier_free_guidance(den, scale, {"label": 2})
        torch.testing.assert_close(guided(x, sigma, label=label), expected)
    assert den.calls == [12, 12, 12]  # conditional and null predictions in one call of 2B


def test_guidance_rescale_matches_the_conditional_std():
    den = LabelDenoiser()
    x, sigma, label = _inputs()
    plain = classifier_free_guidance(den, 5.0, {"label": 2})(x, sigma, label=label)
    rescaled = classifier_free_guidance(den, 5.0, {"label": 2}, rescale=1.0)(x, sigma, label=label)
    cond = den(x, sigma, label=label)
    torch.testing.assert_close(rescaled.std(dim=1), cond.std(dim=1))
    half = classifier_free_guidance(den, 5.0, {"label": 2}, rescale=0.5)(x, sigma, label=label)
    torch.testing.assert_close(half, 0.5 * plain + 0.5 * rescaled)
    with pytest.raises(ValueError, match="rescale must lie in"):
        classifier_free_guidance(den, 5.0, {"label": 2}, rescale=2.0)


def test_guidance_interval_skips_the_null_pass_outside():
    den = LabelDenoiser()
    x, sigma, label = _inputs()
    guided = classifier_free_guidance(den, 4.0, {"label": 2}, interval=(0.5, 1.5))
    den.calls.clear()
    torch.testing.assert_close(guided(x, sigma, label=label), den(x, sigma, label=label))  # sigma = 2: outside
    assert den.calls[0] == 6
    mixed = torch.tensor([2.0, 1.0, 2.0, 1.0, 0.1, 1.0])
    out = guided(x, mixed, label=label)
    inside = (mixed > 0.5) & (mixed <= 1.5)
    full = classifier_free_guidance(den, 4.0, {"label": 2})(x, mixed, label=label)
    torch.testing.assert_close(out[inside], full[inside])
    torch.testing.assert_close(out[~inside], den(x, mixed, label=label)[~inside])


def test_guided_sampling_separates_the_classes():
    den = LabelDenoiser()
    label = torch.tensor([0, 1] * 32)
    kwargs = dict(sampler="dpmpp_2m", steps=15, seed=list(range(64)), cond={"label": label}, null_cond={"label": 2})
    plain = sample(den, (64, 4), **kwargs)
    guided = sample(den, (64, 4), guidance_scale=3.0, **kwargs)
    sign = label.float() * 2 - 1
    assert (plain.mean(1) * sign > 0).float().mean() > 0.95
    assert ((guided.mean(1) * sign).mean()) > (plain.mean(1) * sign).mean()  # guidance pushes further from the null
    with pytest.raises(ValueError, match="needs cond and null_cond"):
        sample(den, (2, 4), guidance_scale=2.0)


def test_drop_conditions_rate_and_null_broadcast():
    label = torch.arange(4000) % 10
    emb = torch.randn(4000, 3)
    out = drop_conditions(
        {"label": label, "emb": emb}, {"label": 10, "emb": torch.zeros(3)}, 0.2, torch.Generator().manual_seed(0)
    )
    dropped = out["label"] == 10
    assert 0.17 < dropped.float().mean() < 0.23
    assert (out["emb"][dropped] == 0).all() and torch.equal(out["emb"][~dropped], emb[~dropped])  # keys drop together
    assert drop_conditions({"label": label}, {"label": 10}, 0.0)["label"] is label
    with pytest.raises(ValueError, match="fits neither one sample"):
        broadcast_null(torch.zeros(5), emb)


def test_mask_keeps_known_values_exactly_and_conditions_the_rest():
    mixture = mixture_for((4, 2, 16), components=2)
    init = mixture.sample(4, torch.Generator().manual_seed(5)).reshape(4, 2, 16)
    mask = torch.zeros(1, 1, 16)
    mask[..., :8] = 1  # keep the first half in time: a continuation
    for name in ("dpmpp_2m", "euler_ancestral", "heun", "ddpm"):
        out = sample(mixture.denoise, (4, 2, 16), sampler=name, steps=12, seed=0, init=init, mask=mask)
        torch.testing.assert_close(out[..., :8], init[..., :8], atol=1e-4, rtol=1e-4)
        free = sample(mixture.denoise, (4, 2, 16), sampler=name, steps=12, seed=0)
        # the generated half follows the known half (same mixture component) better than unconditioned samples do
        assert (out - init).pow(2)[..., 8:].mean() < (free - init).pow(2)[..., 8:].mean()


def test_strength_runs_the_tail_of_the_schedule():
    mixture = mixture_for((8, 6))
    init = mixture.sample(8, torch.Generator().manual_seed(1))
    calls = []
    den = lambda x, s: calls.append(float(s[0])) or mixture.denoise(x, s)  # noqa: E731
    light = sample(den, (8, 6), sampler="euler", steps=20, seed=0, init=init, strength=0.25)
    assert len(calls) == 5 and max(calls) < 1.0
    heavy = sample(mixture.denoise, (8, 6), sampler="euler", steps=20, seed=0, init=init, strength=1.0)
    assert (light - init).abs().mean() < (heavy - init).abs().mean()
    with pytest.raises(ValueError, match="strength must lie in"):
        sample(mixture.denoise, (8, 6), init=init, strength=1.5)
    with pytest.raises(ValueError, match="needs init"):
        sample(mixture.denoise, (8, 6), strength=0.5)
    with pytest.raises(ValueError, match="mask needs init"):
        sample(mixture.denoise, (8, 6), mask=torch.ones(8, 6))
