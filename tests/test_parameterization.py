import itertools

import pytest
import torch
from _helpers import mixture_for

from mmdiff.core import PARAMETERIZATIONS, DiffusionModel, convert_prediction, prediction_from, x0_from_prediction
from mmdiff.core.parameterization import x0_error_scale_sq


def _frame(seed=0, shape=(5, 3, 4)):
    g = torch.Generator().manual_seed(seed)
    x0, noise = (
        torch.randn(shape, generator=g, dtype=torch.float64),
        torch.randn(shape, generator=g, dtype=torch.float64),
    )
    alpha = torch.rand(shape[0], 1, 1, generator=g, dtype=torch.float64) * 0.9 + 0.05
    s = torch.rand(shape[0], 1, 1, generator=g, dtype=torch.float64) * 3 + 0.01
    return x0, noise, alpha, s, alpha * x0 + s * noise


@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
def test_prediction_inverts_to_x0(kind):
    x0, noise, alpha, s, x_t = _frame()
    pred = prediction_from(kind, x0, noise, alpha, s)
    torch.testing.assert_close(x0_from_prediction(kind, pred, x_t, alpha, s), x0)


@pytest.mark.parametrize(("src", "dst"), list(itertools.permutations(PARAMETERIZATIONS, 2)))
def test_conversion_between_all_parameterizations(src, dst):
    x0, noise, alpha, s, x_t = _frame(1)
    converted = convert_prediction(prediction_from(src, x0, noise, alpha, s), src, dst, x_t, alpha, s)
    torch.testing.assert_close(converted, prediction_from(dst, x0, noise, alpha, s))


@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
def test_error_scale_relates_prediction_and_x0_errors(kind):
    x0, noise, alpha, s, x_t = _frame(2)
    err = torch.randn_like(x0) * 1e-3
    pred = prediction_from(kind, x0, noise, alpha, s)
    # a prediction that is off by `err` in x0 (with x_t fixed) is off by sqrt(k^2) * |err| in its own space
    wrong = convert_prediction(prediction_from("x0", x0 + err, noise, alpha, s), "x0", kind, x_t, alpha, s)
    ratio = ((wrong - pred) ** 2).sum((1, 2)) / (err**2).sum((1, 2))
    torch.testing.assert_close(ratio, x0_error_scale_sq(kind, alpha, s).flatten().expand_as(ratio))


def test_vp_special_cases_of_error_scale():
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    alpha = (1 + sigma**2).rsqrt()
    snr = sigma**-2
    torch.testing.assert_close(x0_error_scale_sq("epsilon", alpha, alpha * sigma), snr)
    torch.testing.assert_close(x0_error_scale_sq("v", alpha, alpha * sigma), snr + 1)


@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
def test_network_denoiser_recovers_exact_denoiser(schedule, kind):
    shape = (6, 2, 3)
    mixture = mixture_for(shape)
    denoiser = DiffusionModel(schedule, kind).denoiser(mixture.exact_network(schedule, kind))
    g = torch.Generator().manual_seed(3)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 20.0]).clamp(schedule.sigma_min, schedule.sigma_max)
    x = torch.randn(shape, generator=g) * 2 + sigma.view(-1, 1, 1) * torch.randn(shape, generator=g)
    torch.testing.assert_close(denoiser(x, sigma), mixture.denoise(x, sigma), rtol=1e-4, atol=1e-4)


def test_network_denoiser_runs_network_in_its_dtype():
    class Half(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4).to(torch.bfloat16)

        def forward(self, x, t):
            assert x.dtype == torch.bfloat16
            return self.lin(x)

    from mmdiff.core import DiffusionModel, vp_linear

    out = DiffusionModel(vp_linear(), "v").denoiser(Half())(torch.randn(2, 4), torch.tensor([1.0, 2.0]))
    assert out.dtype == torch.float32


def test_unknown_parameterization_is_named():
    from mmdiff.core import DiffusionModel, vp_linear

    with pytest.raises(ValueError, match=r"unknown parameterization 'eps'.*epsilon, x0, v, flow"):
        DiffusionModel(vp_linear(), "eps").denoiser(torch.nn.Identity())
