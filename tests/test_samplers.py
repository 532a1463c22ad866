import itertools
import math

import diffusers
import pytest
import torch
from _helpers import mixture_for

from mmdiff.core import (
    PARAMETERIZATIONS,
    SAMPLERS,
    DiffusionModel,
    EDMSchedule,
    GaussianMixture,
    NoiseSource,
    jump_sigmas,
    sample,
    vp_linear,
)
from mmdiff.core.gmm import known_answer_mixtures
from mmdiff.core.samplers import STOCHASTIC, ddim, ddpm, denoiser_calls, dpmpp_2m, euler, euler_ancestral, unipc
from mmdiff.core.spacing import data_scale, exponential_sigmas, karras_sigmas, sigma_range
from mmdiff.metrics import sliced_wasserstein

RANK_SHAPES = {2: (3, 4), 3: (3, 2, 3), 4: (3, 2, 2, 2), 5: (3, 1, 2, 2, 2)}


@pytest.mark.parametrize("steps", [1, 2, 3, 50])
@pytest.mark.parametrize("kind", PARAMETERIZATIONS)
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_matrix(name, kind, schedule, steps):
    """Every sampler x parameterisation x schedule: finite, right shape, at 1, 2, 3 and 50 steps (ranks cycled)."""
    rank = 2 + (len(name) + len(kind) + steps) % 4
    shape = RANK_SHAPES[rank]
    mixture = mixture_for(shape)
    denoiser = DiffusionModel(schedule, kind).denoiser(mixture.exact_network(schedule, kind))
    out = sample(denoiser, shape, sampler=name, steps=steps, seed=0, schedule=schedule)
    assert out.shape == shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("rank", sorted(RANK_SHAPES))
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_per_sample_seeds_are_batch_invariant(name, rank):
    shape = RANK_SHAPES[rank]
    mixture = mixture_for(shape)
    batch = sample(mixture.denoise, shape, sampler=name, steps=6, seed=[11, 12, 13])
    alone = sample(mixture.denoise, (1, *shape[1:]), sampler=name, steps=6, seed=[12])
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_seeds_reproduce_and_differ():
    mixture = mixture_for((4, 3))
    a = sample(mixture.denoise, (4, 3), sampler="euler_ancestral", steps=5, seed=0)
    b = sample(mixture.denoise, (4, 3), sampler="euler_ancestral", steps=5, seed=0)
    c = sample(mixture.denoise, (4, 3), sampler="euler_ancestral", steps=5, seed=1)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    with pytest.raises(ValueError, match="seed list has 2 entries but the batch has 4"):
        sample(mixture.denoise, (4, 3), seed=[0, 1])


def test_steps_run_in_float32_whatever_the_model_dtype():
    mixture = mixture_for((2, 3))
    seen = []

    def bf16_denoiser(x, sigma):
        seen.append(x.dtype)
        return mixture.denoise(x, sigma).to(torch.bfloat16)

    out = sample(bf16_denoiser, (2, 3), sampler="dpmpp_2m", steps=4, seed=0)
    assert out.dtype == torch.float32 and set(seen) == {torch.float32}


def _gaussian_exact(mu=1.0, s=0.5):
    """Data N(mu, s^2): the probability-flow ODE has the closed form x(sigma) - mu ~ sqrt(s^2 + sigma^2)."""

    def denoise(x, sigma):
        sig2 = sigma.double().view(-1, *[1] * (x.ndim - 1)) ** 2
        return (mu + s**2 / (s**2 + sig2) * (x.double() - mu)).float()

    def solution(x_start, sigma_start):
        return mu + (x_start - mu) * math.sqrt(s**2 / (s**2 + sigma_start**2))

    return denoise, solution


@pytest.mark.parametrize(
    ("name", "options", "order"),
    [
        ("euler", {}, 1),
        ("heun", {}, 2),
        ("dpmpp_2m", {}, 2),
        ("dpmpp_3m", {}, 3),
        # UniPC-p: the predictor of order p, raised to p + 1 by the corrector (Zhao et al. 2023, Thm. 3.3)
        ("unipc", {"order": 1}, 2),
        ("unipc", {"order": 2}, 3),
        ("unipc", {"order": 3}, 4),
        ("unipc", {"order": 2, "corrector": False}, 2),
        ("unipc", {"order": 2, "variant": "bh1"}, 3),
    ],
)
def test_deterministic_samplers_converge_at_their_order(name, options, order):
    denoise, solution = _gaussian_exact()
    x_start = torch.linspace(-3, 3, 64).unsqueeze(1) * 80
    errors = []
    for steps in (10, 20, 40):
        sigmas = karras_sigmas(steps, 0.002, 80.0)
        x = SAMPLERS[name](denoise, x_start.clone(), sigmas, **options)
        errors.append((x - solution(x_start, 80.0)).abs().max().item())
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert errors[-1] < errors[0]
    assert rates[-1] > order - 0.35, f"{name}: observed convergence rates {rates}, errors {errors}"


def test_ddpm_ddim_eta1_and_euler_ancestral_are_the_same_step():
    """Three derivations of the same ancestral step (DDPM posterior, DDIM with eta=1, k-diffusion's ancestral Euler)."""
    mixture = mixture_for((5, 6))
    sigmas = karras_sigmas(8, 0.01, 20.0)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0)) * 20
    outs = [fn(mixture.denoise, x, sigmas, noise=NoiseSource(7, 5)) for fn in (ddpm, euler_ancestral)]
    outs.append(ddim(mixture.denoise, x, sigmas, noise=NoiseSource(7, 5), eta=1.0))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0], outs[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        ddim(mixture.denoise, x, sigmas), euler(mixture.denoise, x, sigmas), rtol=1e-5, atol=1e-5
    )


def _diffusers_loop(scheduler, net, noise):
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = net(scheduler.scale_model_input(x, t), t.expand(len(x)).float())
        x = scheduler.step(eps, t, x).prev_sample
    return x


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize(
    ("ours", "cls", "kwargs"),
    [
        (ddim, diffusers.DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": True}),
        (euler, diffusers.EulerDiscreteScheduler, {}),
        (dpmpp_2m, diffusers.DPMSolverMultistepScheduler, {}),
    ],
)
def test_agrees_with_diffusers(ours, cls, kwargs, spacing):
    """Same model, same starting noise: our sampler and the diffusers scheduler give the same samples."""
    if cls is diffusers.DDIMScheduler and spacing == "trailing":
        pytest.skip("diffusers' DDIM steps to t - T // steps, not to its next trailing timestep (916 -> 833, not 832)")
    schedule = vp_linear()
    mixture = GaussianMixture.ring()
    net = mixture.exact_network(schedule, "epsilon")
    scheduler = cls(prediction_type="epsilon", timestep_spacing=spacing, steps_offset=1, **kwargs)
    scheduler.set_timesteps(12)
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    expected = _diffusers_loop(scheduler, net, noise)
    sigmas = torch.cat([schedule.sigma_at_timestep(scheduler.timesteps.double()), torch.zeros(1, dtype=torch.float64)])
    got = ours(DiffusionModel(schedule, "epsilon").denoiser(net), noise * sigmas[0].float(), sigmas)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "DDPMScheduler"])
def test_diffusers_schedulers_by_name(name):
    mixture = GaussianMixture.ring()
    ref = mixture.sample(2048, torch.Generator().manual_seed(1))
    x = sample(
        mixture.denoise,
        (2048, 2),
        sampler=f"diffusers:{name}",
        steps=50 if name == "DDPMScheduler" else 20,
        seed=list(range(2048)),
    )
    assert torch.isfinite(x).all()
    assert sliced_wasserstein(x, ref) < 0.08
    one = sample(mixture.denoise, (1, 2), sampler=f"diffusers:{name}", steps=5, seed=[3])
    four = sample(mixture.denoise, (4, 2), sampler=f"diffusers:{name}", steps=5, seed=[0, 1, 2, 3])
    torch.testing.assert_close(four[3:], one, rtol=1e-5, atol=1e-5)


def test_unknown_sampler_names_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown sampler 'dpm'.*dpmpp_2m"):
        sample(mixture_for((1, 2)).denoise, (1, 2), sampler="dpm")
    with pytest.raises(ValueError, match=r"unknown diffusers scheduler 'Nope'.*DDIMScheduler"):
        sample(mixture_for((1, 2)).denoise, (1, 2), sampler="diffusers:Nope")


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize(("variant", "final"), [("bh2", "zero"), ("bh2", "sigma_min"), ("bh1", "sigma_min")])
def test_unipc_agrees_with_diffusers(variant, order, spacing, final):
    """Native UniPC against diffusers' UniPCMultistepScheduler: same model, same noise, same sigmas.

    diffusers' bh1 returns NaN on a final step to sigma = 0 (its B(h) = h is infinite there), so bh1 is compared
    on the schedule that ends at sigma_min; ours returns the denoised estimate at that step.
    """
    schedule = vp_linear()
    net = GaussianMixture.ring().exact_network(schedule, "epsilon")
    scheduler = diffusers.UniPCMultistepScheduler(
        prediction_type="epsilon",
        timestep_spacing=spacing,
        steps_offset=1,
        solver_order=order,
        solver_type=variant,
        final_sigmas_type=final,
    )
    scheduler.set_timesteps(8)
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    expected = _diffusers_loop(scheduler, net, noise)
    sigmas = scheduler.sigmas.double()
    got = unipc(
        DiffusionModel(schedule, "epsilon").denoiser(net),
        noise * sigmas[0].float(),
        sigmas,
        order=order,
        variant=variant,
    )
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=5e-4)


def test_unipc_predictor_of_order_2_is_dpmpp_2m():
    """UniP-2 without the corrector is DPM-Solver++(2M) (its rho = 1/2 is DPM-Solver++'s 1/(2r) weight)."""
    mixture = mixture_for((16, 3))
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)) * 30
    sigmas = karras_sigmas(9, 0.01, 30.0)
    torch.testing.assert_close(
        unipc(mixture.denoise, x, sigmas, order=2, corrector=False), dpmpp_2m(mixture.denoise, x, sigmas)
    )


def test_unipc_refuses_unknown_variants_and_orders():
    mixture = mixture_for((2, 2))
    with pytest.raises(ValueError, match="variant must be 'bh1' or 'bh2', got 'bh3'"):
        sample(mixture.denoise, (2, 2), sampler="unipc", variant="bh3")
    with pytest.raises(ValueError, match="order must be 1, 2 or 3, got 4"):
        sample(mixture.denoise, (2, 2), sampler="unipc", order=4)


def test_denoiser_calls_counts_heun_twice():
    calls = []
    mixture = mixture_for((2, 2))
    for name in ("heun", "dpmpp_2m"):
        calls.clear()
        sample(lambda x, s: calls.append(1) or mixture.denoise(x, s), (2, 2), sampler=name, steps=7, seed=0)
        assert len(calls) == denoiser_calls(name, 7)


def _swd(mixture, reference, steps, **kw):
    n = reference.shape[0]
    return sliced_wasserstein(
        sample(mixture.denoise, (n, 2), steps=steps, seed=0, sigma_data=mixture.std, **kw), reference
    )


@pytest.mark.parametrize("name", sorted(known_answer_mixtures()))
def test_sample_defaults_at_few_calls_against_their_converged_distance(name):
    """Issue 15's goal on mixtures of three scales and two shapes, n = 40,000 as in the issue; the defaults are
    told only the data's scale (sigma_data). At 20 calls the goal (within 1.1x of the 200-step distance from the same
    seeds) is met: measured 0.94x (uneven, every scale) and 1.05x (ring). At 10 calls the goal of 1.5x is NOT met:
    measured 3.4x and 2.0x (a tuned schedule reaches 1.49x and 1.07x, docs/core.md); the 10-call bound below only
    guards that figure against regressions (it was 5.1x and 5.3x before unipc became the default)."""
    mixture = known_answer_mixtures()[name]
    reference = mixture.sample(40_000, torch.Generator().manual_seed(100))
    converged = _swd(mixture, reference, 200)
    assert _swd(mixture, reference, 20) < 1.1 * converged
    assert _swd(mixture, reference, 10) < 4.0 * converged


@pytest.mark.parametrize(("name", "nfe"), [("uneven x1", 5), ("uneven x1", 10), ("ring", 10)])
def test_no_deterministic_sampler_is_worse_than_euler_at_few_calls(name, nfe):
    """Higher order must not cost accuracy at 5 and 10 calls (warm-up, lower-order final steps, second order over
    long steps, Heun's bounded correction). Left out: the samplers that inject fresh noise (at 5 calls their noise
    costs more than Euler's error), and the ring at 5 calls, where the goal is NOT met: there the second-order
    multistep samplers over 4 log-steps of 1.9 measured 0.22 (dpmpp_2m, dpmpp_3m) and 0.25 (unipc) against Euler's
    0.19 (heun 0.12), n = 20,000. Full table: benchmarks/results/samplers.md."""
    mixture = known_answer_mixtures()[name]
    reference = mixture.sample(20_000, torch.Generator().manual_seed(100))
    euler_swd = _swd(mixture, reference, nfe, sampler="euler")
    for sampler in sorted(set(SAMPLERS) - {"euler", "ddim"} - STOCHASTIC):
        steps = max(s for s in range(1, nfe + 1) if denoiser_calls(sampler, s) <= nfe)
        got = _swd(mixture, reference, steps, sampler=sampler)
        assert got <= euler_swd, f"{sampler} at {nfe} calls: {got:.4f} > euler's {euler_swd:.4f}"


def test_default_sigma_range_follows_the_data_and_the_schedule():
    assert sigma_range(sigma_data=2.0) == pytest.approx((0.02, 40.0))
    assert sigma_range() == pytest.approx((0.005, 10.0))  # EDM's sigma_data = 0.5 when nothing is known
    assert sigma_range(EDMSchedule(sigma_data=1.0)) == pytest.approx((0.01, 20.0))
    vp = vp_linear()
    assert sigma_range(vp) == pytest.approx((vp.sigma_min, vp.sigma_max))  # no data scale: the trained range
    assert sigma_range(vp, sigma_data=0.1)[0] == pytest.approx(vp.sigma_min)  # kept inside the trained range
    assert sigma_range(sigma_data=1.0, sigma_max=5.0) == pytest.approx((0.01, 5.0))
    with pytest.raises(ValueError, match="sigma_data: expected the data's standard deviation"):
        sigma_range(sigma_data=0.0)
    assert data_scale(EDMSchedule(sigma_data=2.0)) == 2.0 and data_scale() == 0.5
    with pytest.raises(ValueError, match="sigma_data: expected the data's standard deviation"):
        data_scale(sigma_data=-1.0)  # the scale a sampler assumes is checked where it is looked up, as the range's


def test_gaussian_mixture_quality_dpmpp_2m_20_vs_ddpm_500():
    """The known-answer check. n = 16384 points from an 8-mode ring; sliced W1 (256 directions) to a fresh true set.

    Measured on 2 CPU cores (seeds 0-3): two true sets 0.010-0.028 apart; ddpm at 500 steps 0.011-0.023;
    dpmpp_2m at 20 Karras steps 0.026-0.035; dpmpp_2m at 10 steps ~0.19. Threshold: within 0.045 of the truth and
    within 0.025 of ddpm at 500 steps. See benchmarks/samplers.py for the full table.
    """
    mixture = GaussianMixture.ring()
    n = 16384
    edm = {"spacing": "karras", "sigma_min": 0.002, "sigma_max": 80.0}  # the range these figures were measured on
    ref = mixture.sample(n, torch.Generator().manual_seed(100))
    dpm20 = sliced_wasserstein(sample(mixture.denoise, (n, 2), sampler="dpmpp_2m", steps=20, seed=0, **edm), ref)
    ddpm500 = sliced_wasserstein(sample(mixture.denoise, (n, 2), sampler="ddpm", steps=500, seed=0, **edm), ref)
    dpm10 = sliced_wasserstein(sample(mixture.denoise, (n, 2), sampler="dpmpp_2m", steps=10, seed=0, **edm), ref)
    assert ddpm500 < 0.045
    assert dpm20 < 0.045
    assert dpm20 < ddpm500 + 0.025
    assert dpm10 > 0.1  # the check can fail: too few steps do


def test_trig_pc_is_exact_for_gaussian_data_of_its_scale():
    """In TrigFlow's angle frame the probability-flow ODE of zero-mean Gaussian data of scale sigma_data is du/dphi = 0:
    one step from sigma 50 to 0.01 lands exactly where the ODE does (then the final denoising step)."""
    sd = 0.7
    gaussian = GaussianMixture([[0.0, 0.0]], [sd])
    x_start = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 50
    sigmas = torch.tensor([50.0, 0.01, 0.0], dtype=torch.float64)
    out = SAMPLERS["trig_pc"](gaussian.denoise, x_start, sigmas, sigma_data=sd)
    at_sigma_min = x_start * math.hypot(0.01, sd) / math.hypot(50.0, sd)
    torch.testing.assert_close(out, at_sigma_min * sd**2 / (sd**2 + 0.01**2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("order", "rate"), [(2, 3), (3, 4)])
def test_trig_pc_converges_at_its_order_on_a_mixture(order, rate):
    """Adams predictor of order p plus the Adams-Moulton corrector: order p + 1, on data that is not Gaussian (the
    five-mode mixture; measured rates 3.8-4.0 for order 3 between 40, 80 and 160 steps)."""
    mixture = known_answer_mixtures()["uneven x1"]
    sd = mixture.std
    x_start = torch.randn(256, 2, generator=torch.Generator().manual_seed(1)) * 20 * sd

    def run(steps):
        sigmas = exponential_sigmas(steps, 0.01 * sd, 20 * sd)
        return SAMPLERS["trig_pc"](mixture.denoise, x_start, sigmas, sigma_data=sd, order=order)

    reference = run(640)
    errors = [(run(steps) - reference).pow(2).mean().sqrt().item() for steps in (40, 80, 160)]
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert rates[-1] > rate - 0.4, f"observed convergence rates {rates}, errors {errors}"


def test_sample_gives_trig_pc_the_data_scale():
    seen = {}

    def spy(denoiser, x, sigmas, *, noise=None, callback=None, sigma_data=None):
        seen["sigma_data"] = sigma_data
        return x

    sample(GaussianMixture.ring().denoise, (2, 2), sampler=spy, steps=3, seed=0, sigma_data=2.5)
    assert seen["sigma_data"] == 2.5
    sample(GaussianMixture.ring().denoise, (2, 2), sampler=spy, steps=3, seed=0, schedule=EDMSchedule(sigma_data=0.3))
    assert seen["sigma_data"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="trig_pc: order must be 1, 2 or 3"):
        sample(GaussianMixture.ring().denoise, (2, 2), sampler="trig_pc", steps=3, order=4)


def test_jump_sigmas_take_one_step_to_the_jump_then_exponential():
    sigmas = jump_sigmas(10, 0.01, 2.0, 80.0).tolist()
    assert len(sigmas) == 11 and sigmas[:2] == [80.0, 2.0] and sigmas[-1] == 0.0
    ratios = [a / b for a, b in itertools.pairwise(sigmas[1:-1])]
    assert max(ratios) == pytest.approx(min(ratios))  # uniform in log sigma below the jump
    assert sigmas[-2] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="jump_sigmas: expected 0 < sigma_min < sigma_jump < sigma_max"):
        jump_sigmas(10, 0.01, 100.0, 80.0)
