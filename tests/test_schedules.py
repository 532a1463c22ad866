import diffusers
import numpy as np
import pytest
import torch

from mmdiff.core import (
    EDMSchedule,
    FlowSchedule,
    VPSchedule,
    karras_sigmas,
    schedule_from_diffusers,
    sigmas_for,
    vp_cosine,
    vp_linear,
    vp_scaled_linear,
    vp_sigmoid,
)


@pytest.mark.parametrize(
    ("ours", "beta_schedule"),
    [
        (vp_linear, "linear"),
        (vp_scaled_linear, "scaled_linear"),
        (vp_cosine, "squaredcos_cap_v2"),
        (vp_sigmoid, "sigmoid"),
    ],
)
@pytest.mark.parametrize("zero_snr", [False, True])
def test_vp_tables_match_diffusers(ours, beta_schedule, zero_snr):
    kwargs = {} if beta_schedule == "squaredcos_cap_v2" else {"beta_start": 1e-4, "beta_end": 0.02}
    if beta_schedule == "scaled_linear":
        kwargs = {"beta_start": 0.00085, "beta_end": 0.012}
    ref = diffusers.DDPMScheduler(beta_schedule=beta_schedule, rescale_betas_zero_snr=zero_snr, **kwargs)
    sched = ours(zero_terminal_snr=zero_snr, **kwargs)
    if not zero_snr:
        np.testing.assert_allclose(sched.betas.numpy(), ref.betas.double().numpy(), rtol=1e-5, atol=1e-7)
    else:  # diffusers rescales in float32; compare the table it defines, abar, to float32 accuracy
        np.testing.assert_allclose(
            sched.alphas_cumprod[:-1].numpy(), ref.alphas_cumprod[:-1].double().numpy(), atol=2e-6
        )
        assert sched.alphas_cumprod[-1] == pytest.approx(2.0**-24)  # floored, so sigma_max is finite
        assert np.isfinite(sched.sigma_max)


def test_vp_sigma_timestep_round_trip():
    sched = vp_linear()
    t = torch.tensor([0.0, 0.5, 10.25, 500.0, 998.9, 999.0], dtype=torch.float64)
    np.testing.assert_allclose(sched.timestep_of_sigma(sched.sigma_at_timestep(t)).numpy(), t.numpy(), atol=1e-8)
    # integer timesteps hit the table exactly
    np.testing.assert_allclose(
        sched.sigma_at_timestep(torch.tensor([3.0, 999.0])).numpy(), sched.sigmas[[3, 999]].numpy(), rtol=1e-12
    )
    # out-of-range sigmas clamp to the table's ends
    assert sched.timestep_of_sigma(torch.tensor([1e-9, 1e9], dtype=torch.float64)).tolist() == [0.0, 999.0]


@pytest.mark.parametrize("sched", [vp_linear(), EDMSchedule(), FlowSchedule(shift=3.0), FlowSchedule()])
def test_net_time_inverts_and_unit_time_is_monotone(sched):
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    sigma = sched.sigma_at(u)
    assert (sigma[1:] > sigma[:-1]).all()
    assert sigma[0] == pytest.approx(sched.sigma_min, rel=1e-6) and sigma[-1] == pytest.approx(
        sched.sigma_max, rel=1e-6
    )
    np.testing.assert_allclose(sched.sigma_from_net_time(sched.net_time(sigma)).numpy(), sigma.numpy(), rtol=1e-7)


def test_flow_schedule_is_rectified_flow():
    sched = FlowSchedule()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    sigma = t / (1 - t)
    # x_t = (1 - t) x0 + t noise  <=>  alpha * (x0 + sigma * noise) with alpha = 1 - t
    np.testing.assert_allclose(sched.input_scale(sigma).numpy(), (1 - t).numpy())
    np.testing.assert_allclose((sched.input_scale(sigma) * sigma).numpy(), t.numpy())


def test_karras_sigmas_formula():
    s = karras_sigmas(5, 0.1, 10.0, rho=7.0)
    assert s[0] == pytest.approx(10.0) and s[-2] == pytest.approx(0.1) and s[-1] == 0 and len(s) == 6
    ramp = (s[:-1] ** (1 / 7)).numpy()
    np.testing.assert_allclose(np.diff(ramp), np.diff(ramp)[0])  # uniform in sigma^(1/rho)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_time_spacings_match_diffusers_timesteps(spacing):
    sched = vp_linear()
    ref = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
    ref.set_timesteps(7)
    ours = sigmas_for(sched, 7, spacing, steps_offset=1 if spacing == "leading" else 0)
    expected = sched.sigmas[ref.timesteps.long()]
    np.testing.assert_allclose(ours[:-1].numpy(), expected.numpy())
    assert ours[-1] == 0


def test_continuous_spacings_and_errors():
    s = sigmas_for(FlowSchedule(), 4, "trailing")
    assert len(s) == 5 and (s[:-1].diff() < 0).all() and s[0] == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="needs a schedule"):
        sigmas_for(None, 4, "trailing")
    with pytest.raises(ValueError, match="expected one of exponential, karras"):
        sigmas_for(None, 4, "cosine")


def test_schedule_from_diffusers_config(tmp_path):
    ref = diffusers.DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"
    )
    ref.save_config(tmp_path)
    sched, param = schedule_from_diffusers(tmp_path / "scheduler_config.json")
    assert isinstance(sched, VPSchedule) and param == "v"
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), ref.alphas_cumprod.double().numpy(), rtol=1e-5)
    flow, param = schedule_from_diffusers(dict(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config))
    assert isinstance(flow, FlowSchedule) and param == "flow" and flow.shift == 3.0
    with pytest.raises(ValueError, match="beta_schedule 'bogus'"):
        schedule_from_diffusers({"beta_schedule": "bogus"})


def test_bad_schedule_arguments_are_named():
    with pytest.raises(ValueError, match="every beta"):
        VPSchedule([0.1, 1.5])
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        EDMSchedule(sigma_min=5, sigma_max=1)
