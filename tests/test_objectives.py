import pytest
import torch
from _helpers import mixture_for

from mmdiff.core import (
    PARAMETERIZATIONS,
    DiffusionLoss,
    DiffusionModel,
    LogitNormalTime,
    LogNormalSigma,
    UniformTime,
    prediction_from,
    vp_linear,
)
from mmdiff.core.objectives import offset_noise, x0_weight
from mmdiff.core.parameterization import x0_error_scale_sq


def oracle(schedule, kind, x0, offset=0.0):
    """A network that knows the clean batch ``x0``: it returns the exact target, plus ``offset``."""

    def net(x_t, t):
        sigma = schedule.sigma_from_net_time(t.double()).float().view(-1, *[1] * (x0.ndim - 1))
        alpha = schedule.input_scale(sigma)
        noise = (x_t / alpha - x0) / sigma
        return prediction_from(kind, x0, noise, alpha, alpha * sigma) + offset

    return net


@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
def test_loss_targets_match_the_parameterization(schedule, kind):
    """A network that knows the noise returns exactly the target, so the loss is zero; a wrong one is not."""
    x0 = torch.randn(8, 2, 5)
    loss = DiffusionLoss(DiffusionModel(schedule, kind))(
        oracle(schedule, kind, x0), x0, generator=torch.Generator().manual_seed(0)
    )
    assert loss.shape == (8,)
    assert loss.max() < 1e-6
    wrong = DiffusionLoss(DiffusionModel(schedule, kind))(lambda x_t, t: torch.zeros_like(x_t), x0)
    assert (wrong > 1e-3).all()


@pytest.mark.parametrize("weighting", ["min_snr", "soft_min_snr"])
@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
def test_weightings_equal_their_x0_space_definition(weighting, kind):
    """Weighted loss of a prediction error e == x0-space weight * |e|^2 / k^2, for every parameterisation."""
    schedule = vp_linear()
    x0 = torch.randn(16, 4)
    loss_fn = DiffusionLoss(DiffusionModel(schedule, kind), weighting=weighting, snr_gamma=5.0)
    loss = loss_fn(oracle(schedule, kind, x0, offset=0.01), x0, generator=torch.Generator().manual_seed(1))
    sigma = UniformTime()(16, schedule, torch.Generator().manual_seed(1))  # the same draws as inside the loss
    alpha = schedule.input_scale(sigma)
    k2 = x0_error_scale_sq(kind, alpha, alpha * sigma)
    expected = x0_weight(weighting, sigma, 5.0) * (0.01**2) / k2
    torch.testing.assert_close(loss, expected.float(), rtol=1e-3, atol=1e-12)


def test_noise_shift_multiplies_each_samples_drawn_sigma():
    """``noise_shift (B,)`` scales the sigma drawn for each sample (clamped to the schedule), nothing else changes."""
    schedule = vp_linear()
    seen = []

    def net(x_t, t):
        seen.append(schedule.sigma_from_net_time(t.double()).float())
        return torch.zeros_like(x_t)

    loss_fn, x0 = DiffusionLoss(DiffusionModel(schedule, "v")), torch.randn(4, 3)
    loss_fn(net, x0, generator=torch.Generator().manual_seed(2))
    shift = torch.tensor([1.0, 4.0, 1.0, 1e9])
    loss_fn(net, x0, generator=torch.Generator().manual_seed(2), noise_shift=shift)
    plain, shifted = seen
    torch.testing.assert_close(shifted[:3], plain[:3] * shift[:3], rtol=1e-3, atol=0)
    assert shifted[3] == pytest.approx(schedule.sigma_max, rel=1e-3)  # clamped to the schedule's range


def test_known_parts_are_left_out_of_the_loss():
    """``known_mask``: the error counts on the unknown elements only, as their mean (a half-known sample's unknown
    half trains at full weight); a sample with nothing unknown scores 0; no mask is the plain mean."""
    schedule = vp_linear()
    x0 = torch.randn(3, 2, 4)
    error = torch.zeros(3, 2, 4)
    error[:, :, :2] = 1.0  # the network is wrong on the first two positions only, right elsewhere
    loss_fn = DiffusionLoss(DiffusionModel(schedule, "x0"))
    net = lambda x_t, t: x0 + error  # noqa: E731  (x0-prediction: the error is the output's error)
    known = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])[:, None]  # (3, 1, 4)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = loss_fn(net, x0, generator=gen())
    masked = loss_fn(net, x0, generator=gen(), known_mask=known)
    torch.testing.assert_close(plain, torch.full((3,), 0.5))  # half the elements wrong
    torch.testing.assert_close(masked, torch.tensor([1.0, 0.0, 0.0]))  # only the wrong half / only the right half


def test_min_snr_weights():
    sigma = torch.tensor([0.1, 1.0, 10.0])
    torch.testing.assert_close(x0_weight("min_snr", sigma, 5.0), torch.tensor([5.0, 1.0, 0.01]))
    torch.testing.assert_close(x0_weight("soft_min_snr", sigma, 1.0), torch.tensor([100 / 101, 0.5, 0.01 / 1.01]))
    torch.testing.assert_close(x0_weight("min_snr", sigma, 5.0, floor=1.0), torch.tensor([5.0, 1.0, 1.0]))
    torch.testing.assert_close(x0_weight("soft_min_snr", sigma, 1.0, floor=0.5), torch.tensor([100 / 101, 0.5, 0.5]))
    with pytest.raises(ValueError, match="snr_floor=1.0 needs weighting min_snr"):
        DiffusionLoss(DiffusionModel(vp_linear()), weighting="uniform", snr_floor=1.0)
    with pytest.raises(ValueError, match="unknown loss weighting 'snr'"):
        DiffusionLoss(DiffusionModel(vp_linear()), weighting="snr")


def test_noise_level_samplers_stay_in_range_and_are_seeded():
    sched = vp_linear()
    for sampler in (UniformTime(), LogitNormalTime(0.0, 1.0), LogNormalSigma()):
        a = sampler(1000, sched, torch.Generator().manual_seed(0))
        b = sampler(1000, sched, torch.Generator().manual_seed(0))
        assert torch.equal(a, b) and a.shape == (1000,)
        assert a.min() >= sched.sigma_min * 0.999 and a.max() <= sched.sigma_max * 1.001
    # logit-normal puts more mass in the middle of unit time than uniform does
    mid = lambda s: ((s > sched.sigma_at(0.25)) & (s < sched.sigma_at(0.75))).float().mean()  # noqa: E731
    assert mid(LogitNormalTime()(4000, sched)) > mid(UniformTime()(4000, sched)) + 0.1


@pytest.mark.parametrize("shape", [(4, 3, 10), (4, 3, 5, 6, 7), (4, 2)])
def test_offset_noise_is_a_per_channel_constant(shape):
    x = torch.zeros(shape)
    a = offset_noise(x, 0.0, torch.Generator().manual_seed(0))
    b = offset_noise(x, 1.0, torch.Generator().manual_seed(0))
    diff = b - a
    assert diff.shape == shape
    if len(shape) > 2:
        flat = diff.reshape(shape[0], shape[1], -1)
        assert torch.allclose(flat, flat[..., :1].expand_as(flat))
    assert diff.abs().sum() > 0


@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
def test_the_exact_denoiser_minimises_the_loss(kind):
    """The objective is proper: the Bayes-optimal network (the analytic mixture denoiser) beats nearby networks."""
    schedule = vp_linear()
    mixture = mixture_for((4096, 2), components=2)
    x0 = mixture.sample(4096, torch.Generator().manual_seed(0))
    exact = mixture.exact_network(schedule, kind)
    loss_fn = DiffusionLoss(DiffusionModel(schedule, kind), weighting="min_snr")

    def mean_loss(net):
        return loss_fn(net, x0, generator=torch.Generator().manual_seed(1)).mean().item()

    best = mean_loss(exact)
    for bias in (-0.05, 0.05):
        assert mean_loss(lambda x_t, t, b=bias: exact(x_t, t) + b) > best
    assert mean_loss(lambda x_t, t: exact(x_t, t) * 1.05) > best
