"""Samplers: plain functions over an explicit state, one signature for all.

``sampler(denoiser, x, sigmas, *, noise, callback=None, **options) -> x``

* ``denoiser(x, sigma)``: ``x`` is ``(B, ...)`` in the VE frame, ``sigma`` is ``(B,)``; returns ``x0_hat`` (conditions
  are bound by the caller, see :func:`mmdiff.core.sample`).
* ``x``: the starting point, ``x0_guess + sigmas[0] * noise``; ``sigmas``: decreasing, usually ending at 0.
* ``noise``: a :class:`~mmdiff.core.noise.NoiseSource`, the only randomness (stochastic samplers only).
* ``callback(StepInfo)``: called after each step.

Every step's tensor maths is float32 (coefficients are computed in float64 from the sigma list) and a final
``sigma_next == 0`` is handled by every sampler (the result is then the last denoised estimate, or its exact limit).
Each is written from the cited algorithm, in the VE frame where ``lambda = -log sigma``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

Denoiser = Callable[..., Tensor]

#: The longest step (in lambda = -log sigma, noise included for SDE samplers) over which a multistep sampler
#: extrapolates with a quadratic (third order). Over longer steps the fit through the last three estimates, spaced
#: as far apart, overshoots: at 5-7 steps on the known-answer mixtures third-order steps were 1.2-3.5x worse than
#: second-order ones, and at 10 steps (h = 0.77) better (benchmarks/samplers.py, docs/core.md).
THIRD_ORDER_MAX_STEP = 1.0


def _multistep_order(order: int, known: int, steps_left: int, step: float) -> int:
    """The order of a multistep sampler's next step: at most ``order``, the ``known`` estimates it has (warm-up), the
    ``steps_left`` (lower-order final steps: the last two are orders 1 and 2, as diffusers' solvers), and second
    order over a ``step`` in lambda longer than :data:`THIRD_ORDER_MAX_STEP`."""
    chosen = min(order, known, steps_left)
    return 2 if chosen == 3 and step > THIRD_ORDER_MAX_STEP else chosen


class StepInfo(NamedTuple):
    """What a sampler reports to ``callback`` after step ``i`` (from ``sigma`` to ``sigma_next``)."""

    i: int
    sigma: float
    sigma_next: float
    x: Tensor
    denoised: Tensor


def _denoise(denoiser: Denoiser, x: Tensor, sigma: float) -> Tensor:
    return denoiser(x, torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32)).float()


def _report(callback, i, sigma, sigma_next, x, denoised) -> None:
    if callback is not None:
        callback(StepInfo(i, sigma, sigma_next, x, denoised))


def _churn(x: Tensor, sigma: float, steps: int, noise, s_churn: float, s_tmin: float, s_tmax: float, s_noise: float):
    """Karras et al. 2022 Alg. 2 lines 5-7: raise the noise level from ``sigma`` to ``sigma_hat`` by adding noise."""
    gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax and s_churn > 0 else 0.0
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        x = x + noise(x) * s_noise * math.sqrt(sigma_hat**2 - sigma**2)
    return x, sigma_hat


def euler(denoiser, x, sigmas, *, noise=None, callback=None, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0):
    """Euler steps on the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` (Karras et al. 2022,
    Alg. 2 without the second-order correction; ``s_churn > 0`` adds its stochastic churn)."""
    sig = sigmas.tolist()
    x = x.float()
    for i in range(len(sig) - 1):
        x, sigma_hat = _churn(x, sig[i], len(sig) - 1, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = _denoise(denoiser, x, sigma_hat)
        x = denoised + (sig[i + 1] / sigma_hat) * (x - denoised)  # = x + (sigma_next - sigma_hat) * d
        _report(callback, i, sig[i], sig[i + 1], x, denoised)
    return x


def heun(denoiser, x, sigmas, *, noise=None, callback=None, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0):
    """Heun's second-order method (Karras et al. 2022, Alg. 2: an Euler predictor, then a correction with the
    denoiser at the predicted point; optional churn), with the correction taken in the exponential-integrator
    form of the data-prediction ODE (Lu et al. 2022, "DPM-Solver++"; ``D`` linear in ``lambda = -log sigma``):
    ``x' = r x + (1 - r) D + (h - 1 + r) / h (D' - D)`` with ``r = sigma'/sigma``, ``h = -log r``.

    Karras' trapezoid in sigma, ``x + (sigma' - sigma) (d + d') / 2`` with ``d' = (x_euler - D') / sigma'``, weighs
    the prediction's error by ``sigma / (2 sigma')``: over a long step to a small sigma it blows up (at 5 calls it
    diverged on the known-answer mixtures). This form has bounded weights, the same order, and the same result as
    the step shrinks. The last step to sigma = 0 is an Euler step. Two denoiser calls per step but the last."""
    sig = sigmas.tolist()
    x = x.float()
    for i in range(len(sig) - 1):
        x, sigma_hat = _churn(x, sig[i], len(sig) - 1, noise, s_churn, s_tmin, s_tmax, s_noise)
        sigma_next = sig[i + 1]
        denoised = _denoise(denoiser, x, sigma_hat)
        r = sigma_next / sigma_hat
        x_euler = denoised + r * (x - denoised)  # = x + (sigma_next - sigma_hat) * d
        if sigma_next == 0:
            x = x_euler
        else:
            h = math.log(sigma_hat / sigma_next)
            slope = (h - 1 + r) / h  # the weight of the change of D over the step
            x = x_euler + slope * (_denoise(denoiser, x_euler, sigma_next) - denoised)
        _report(callback, i, sig[i], sigma_next, x, denoised)
    return x


def _ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """Split a step to ``sigma_next`` into a deterministic part down to ``sigma_down`` and fresh noise ``sigma_up``
    with ``sigma_down^2 + sigma_up^2 = sigma_next^2``; ``eta = 1`` is the DDPM posterior's variance."""
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma)
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def euler_ancestral(denoiser, x, sigmas, *, noise, callback=None, eta=1.0, s_noise=1.0):
    """Ancestral Euler (as in k-diffusion / diffusers' EulerAncestral): an Euler step to ``sigma_down`` then fresh
    noise of std ``sigma_up``. With ``eta = 1`` this has DDPM's per-step variance."""
    sig = sigmas.tolist()
    x = x.float()
    for i in range(len(sig) - 1):
        denoised = _denoise(denoiser, x, sig[i])
        sigma_down, sigma_up = _ancestral_split(sig[i], sig[i + 1], eta)
        x = denoised + (sigma_down / sig[i]) * (x - denoised)
        if sigma_up > 0:
            x = x + noise(x) * (s_noise * sigma_up)
        _report(callback, i, sig[i], sig[i + 1], x, denoised)
    return x


def ddim(denoiser, x, sigmas, *, noise=None, callback=None, eta=0.0):
    """DDIM (Song et al. 2021, eq. 12) in the VE frame.

    With ``abar = 1/(1+sigma^2)`` DDIM's ``sigma_eta`` becomes a VE noise std ``c = eta * s' sqrt(s^2 - s'^2) / s``
    (``s``, ``s'`` the current and next sigma), and the update is ``x' = x0 + sqrt(s'^2 - c^2) eps_hat + c z``.
    ``eta = 0`` is the deterministic DDIM (which equals Euler on the VE ODE); ``eta = 1`` equals DDPM.
    """
    sig = sigmas.tolist()
    x = x.float()
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        c = eta * sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma
        eps_hat = (x - denoised) / sigma
        x = denoised + math.sqrt(max(sigma_next**2 - c**2, 0.0)) * eps_hat
        if c > 0:
            x = x + noise(x) * c
        _report(callback, i, sigma, sigma_next, x, denoised)
    return x


def ddpm(denoiser, x, sigmas, *, noise, callback=None):
    """Ancestral sampling from the DDPM posterior q(x_s | x_t, x0_hat) (Ho et al. 2020, eq. 6-7).

    Converted to the VE frame (``abar = 1/(1+sigma^2)``) the posterior is a Brownian bridge: with
    ``r = sigma_s^2 / sigma_t^2``, ``x_s = x0 + r (x_t - x0) + sigma_s sqrt(1 - r) z``.
    """
    sig = sigmas.tolist()
    x = x.float()
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        r = (sigma_next / sigma) ** 2
        x = denoised + r * (x - denoised)
        if sigma_next > 0:
            x = x + noise(x) * (sigma_next * math.sqrt(1 - r))
        _report(callback, i, sigma, sigma_next, x, denoised)
    return x


def dpmpp_2m_sde(denoiser, x, sigmas, *, noise, callback=None, eta=1.0, s_noise=1.0):
    """DPM-Solver++(2M) SDE (Lu et al. 2022, sec. 4 with the SDE's exact noise term; midpoint form as in diffusers'
    ``algorithm_type="sde-dpmsolver++"``). ``eta`` scales the injected noise; ``eta = 0`` is :func:`dpmpp_2m`."""
    sig = sigmas.tolist()
    x = x.float()
    old_denoised, h_last = None, None
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma / sigma_next)
            eta_h = eta * h
            keep = -math.expm1(-h - eta_h)  # 1 - exp(-(1 + eta) h)
            x = (sigma_next / sigma) * math.exp(-eta_h) * x + keep * denoised
            if old_denoised is not None:
                r = h_last / h
                x = x + (0.5 * keep / r) * (denoised - old_denoised)
            if eta > 0:
                x = x + noise(x) * (sigma_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise)
            h_last = h
        old_denoised = denoised
        _report(callback, i, sigma, sigma_next, x, denoised)
    return x


def dpmpp_3m_sde(denoiser, x, sigmas, *, noise=None, callback=None, eta=1.0, s_noise=1.0):
    """Third-order multistep DPM-Solver++ (Lu et al. 2022, the order-3 multistep data-prediction update), with the
    optional SDE noise of :func:`dpmpp_2m_sde`. ``eta = 0`` gives the deterministic DPM-Solver++(3M).

    With ``hh = (1 + eta) h`` the update integrates a quadratic fit ``D(lambda)`` of the last three denoised
    estimates exactly: ``x' = e^{-hh} x + (1 - e^{-hh}) D + phi2 h D' + phi3 h^2 D''`` (derivatives in lambda at the
    current point) with ``phi2 = 1 - (1 - e^{-hh}) / hh`` and ``phi3 = (hh^2/2 - hh + 1 - e^{-hh}) / hh^2``.
    Warm-up and lower-order final steps, as diffusers' multistep solvers do: the order is limited by the estimates
    seen so far and by the steps left (the last step is first order, the one before it at most second), so a
    third-order extrapolation never spans the long last steps of a few-step schedule; a step longer than
    :data:`THIRD_ORDER_MAX_STEP` in lambda is second order. Its second-order steps are :func:`dpmpp_2m_sde`'s (the
    midpoint weight ``(1 - e^{-hh}) / 2r``; the exact integral of the linear extrapolation, ``phi2 h / h_1``,
    nearly doubles that weight over long steps and was 2x worse at 5 calls).
    """
    sig = sigmas.tolist()
    x = x.float()
    d_1 = d_2 = None  # previous two denoised estimates
    h_1 = h_2 = None  # previous two step sizes in lambda
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
            h = None
        else:
            h = math.log(sigma / sigma_next)
            hh = h * (1 + eta)
            x = math.exp(-hh) * x - math.expm1(-hh) * denoised
            phi2 = 1 + math.expm1(-hh) / hh
            phi3 = (hh * hh / 2 - hh + 1 - math.exp(-hh)) / (hh * hh)
            known = 1 + (d_1 is not None) + (d_2 is not None)
            step_order = _multistep_order(3, known, len(sig) - 1 - i, hh)
            if step_order == 3:
                slope0 = (denoised - d_1) / h_1  # dD/dlambda between the last two points
                slope1 = (d_1 - d_2) / h_2
                curv = 2 * (slope0 - slope1) / (h_1 + h_2)  # d2D/dlambda2 of the quadratic fit
                deriv = slope0 + 0.5 * curv * h_1  # dD/dlambda at the current point
                x = x + (phi2 * h) * deriv + (phi3 * h * h) * curv
            elif step_order == 2:  # second order: DPM-Solver++(2M)'s midpoint weight, as dpmpp_2m
                x = x - (0.5 * math.expm1(-hh) * h / h_1) * (denoised - d_1)
            if eta > 0:
                x = x + noise(x) * (sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise)
        d_1, d_2 = denoised, d_1
        h_1, h_2 = h, h_1
        _report(callback, i, sigma, sigma_next, x, denoised)
    return x


def dpmpp_2m(denoiser, x, sigmas, *, noise=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2): a second-order multistep exponential integrator on
    the data prediction; the first step and the step to sigma = 0 are first order. :func:`dpmpp_2m_sde` with
    ``eta = 0``, whose update then reduces to ``x' = (s'/s) x + (1 - e^{-h}) ((1 + 1/2r) D - (1/2r) D_prev)``."""
    return dpmpp_2m_sde(denoiser, x, sigmas, noise=noise, callback=callback, eta=0.0)


def dpmpp_3m(denoiser, x, sigmas, *, noise=None, callback=None):
    """Deterministic DPM-Solver++(3M): :func:`dpmpp_3m_sde` with ``eta = 0``."""
    return dpmpp_3m_sde(denoiser, x, sigmas, noise=noise, callback=callback, eta=0.0)


def _unipc_coefficients(h: float, ratios: list[float], variant: str, corrector: bool) -> tuple[float, list[float]]:
    """The UniPC weights for one step of size ``h`` in lambda (Zhao et al. 2023, Alg. 1-2 with the ``B(h)`` of sec.
    3.3; data prediction).

    ``ratios`` are ``r_k = (lambda_k - lambda_0) / h`` of the older estimates used (negative, newest first). Returns
    ``B(h)`` and the ``rho`` weights of the differences ``(D_k - D_0) / r_k`` (for the corrector, the last weight
    belongs to ``D_t - D_0``, the new estimate at the step's end, with ``r = 1``).
    """
    hh = -h
    h_phi_k = math.expm1(hh) / hh - 1  # phi_2-like term, updated below to the higher phi_k
    b_h = hh if variant == "bh1" else math.expm1(hh)
    rks = [*ratios, 1.0]
    order = len(rks)  # the corrector solves for one more weight than the predictor
    rows, rhs, factorial = [], [], 1
    for i in range(1, order + 1):
        rows.append([r ** (i - 1) for r in rks])
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    if corrector:
        rhos = [0.5] if order == 1 else np.linalg.solve(np.array(rows), np.array(rhs)).tolist()
    elif not ratios:
        rhos = []
    else:  # the predictor uses the first len(ratios) conditions
        rhos = [0.5] if len(ratios) == 1 else np.linalg.solve(np.array(rows)[:-1, :-1], np.array(rhs)[:-1]).tolist()
    return b_h, rhos


def _unipc_update(x, sigma, sigma_next, history, variant, denoised_next=None):
    """One UniP step (``denoised_next is None``) or the UniC correction of the step just taken, from ``x`` at
    ``sigma`` to ``sigma_next``. ``history``: ``(lambda, D)`` pairs, newest last; its newest is the estimate at ``x``.

    Written as one linear combination ``a x + sum_k c_k D_k`` so the tensor maths is a few float32 axpys.
    """
    lam0, d0 = history[-1]
    h = math.log(sigma / sigma_next)
    older = history[-2::-1]  # newest first
    ratios = [(lam - lam0) / h for lam, _ in older]
    b_h, rhos = _unipc_coefficients(h, ratios, variant, corrector=denoised_next is not None)
    out = (sigma_next / sigma) * x - math.expm1(-h) * d0  # the first-order (DDIM) step
    for (_, d_k), r_k, rho in zip(older, ratios, rhos):  # - B(h) rho_k (D_k - D_0) / r_k
        c = b_h * rho / r_k
        out = out - c * d_k + c * d0
    if denoised_next is not None:
        out = out - (b_h * rhos[-1]) * (denoised_next - d0)
    return out


def unipc(
    denoiser, x, sigmas, *, noise=None, callback=None, order=2, variant="bh2", corrector=True, lower_order_final=True
):
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
    Models"): the multistep predictor UniP of ``order`` on the data prediction, and the corrector UniC, which reuses
    the new denoiser output at each step's end to raise the step's order by one at no extra call.

    In the VE frame (``alpha = 1``, ``lambda = -log sigma``) the update is the paper's with ``alpha_t = 1``.
    ``variant``: ``bh2`` (``B(h) = e^h - 1``, the default) or ``bh1`` (``B(h) = h``, the paper's choice for
    unconditional sampling at 10+ steps; with diffusers' fixed second-order weight it overshoots long steps: 5.5x
    bh2's distance at 5 calls on the known-answer mixtures). ``order = 2`` (with the corrector: third order) is the default, as
    in diffusers: measured best at 5-20 calls. Warm-up: the order is limited by the estimates seen so far; with
    ``lower_order_final`` the last steps drop to orders 1 and 2 (as diffusers does), and a step longer than
    :data:`THIRD_ORDER_MAX_STEP` is at most second order, which keeps few-step sampling stable; the step to
    ``sigma = 0`` returns the denoised estimate. One denoiser call per step.
    """
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"unipc: variant must be 'bh1' or 'bh2', got {variant!r}")
    if order not in (1, 2, 3):
        raise ValueError(f"unipc: order must be 1, 2 or 3, got {order!r}")
    sig = sigmas.tolist()
    steps = len(sig) - 1
    x = x.float()
    history: list[tuple[float, Tensor]] = []  # (lambda, denoised), newest last, at most `order`
    x_before, last_order = None, 0  # the previous step's start and the history length its predictor used
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        if corrector and x_before is not None:
            x = _unipc_update(x_before, sig[i - 1], sigma, history[-last_order:], variant, denoised_next=denoised)
        history = [*history, (-math.log(sigma), denoised)][-order:]
        if sigma_next == 0:
            x_before, x = x, denoised
        else:
            steps_left = steps - i if lower_order_final else steps
            step_order = _multistep_order(order, len(history), steps_left, math.log(sigma / sigma_next))
            x_before, last_order = x, step_order
            x = _unipc_update(x, sigma, sigma_next, history[-step_order:], variant)
        _report(callback, i, sigma, sigma_next, x, denoised)
    return x


def _adams_weights(nodes: list[float], a: float, b: float) -> list[float]:
    """Weights ``w_j`` with ``sum_j w_j f(nodes_j) = int_a^b p(t) dt``, ``p`` the polynomial through the nodes
    (variable-step Adams-Bashforth when ``[a, b]`` lies beyond the nodes, Adams-Moulton when ``b`` is one)."""
    weights = []
    for j, t_j in enumerate(nodes):
        basis = np.polynomial.Polynomial([1.0])
        for k, t_k in enumerate(nodes):
            if k != j:
                basis = basis * np.polynomial.Polynomial([-t_k, 1.0]) / (t_j - t_k)
        antiderivative = basis.integ()
        weights.append(float(antiderivative(b) - antiderivative(a)))
    return weights


def trig_pc(
    denoiser, x, sigmas, *, noise=None, callback=None, sigma_data=0.5, order=2, corrector=True, lower_order_final=True
):
    """Adams predictor-corrector in the angle frame of TrigFlow (Lu & Song 2024, "Simplifying, Stabilizing and
    Scaling Continuous-Time Consistency Models"), where a Gaussian of standard deviation ``sigma_data`` costs nothing.

    With ``phi = atan(sigma / sigma_data)`` and ``u = x / sqrt(sigma^2 + sigma_data^2)``, the probability-flow ODE
    is exactly ``du/dphi = -F``, ``F = (c^2 D - sigma_data^2 x) / (sigma sigma_data c)`` with ``c^2 = sigma^2 +
    sigma_data^2`` (EDM's preconditioned network output, Karras et al. 2022). For zero-mean Gaussian data of that
    scale ``F = 0``, and for a Gaussian with mean ``m`` it is ``m sin(phi) / sigma_data``: the nearly linear high-noise
    part that exponential integrators in ``log sigma`` spend steps on is a smooth function here, so long steps at high
    noise are cheap for such data (:func:`~mmdiff.core.spacing.jump_sigmas`). The predictor extrapolates ``F`` with
    the polynomial through the last ``order`` values (variable-step Adams-Bashforth); the corrector re-takes the step
    with the polynomial that also passes through ``F`` at the step's end (Adams-Moulton), the call the next step makes
    anyway, as UniC does (Zhao et al. 2023): one denoiser call per step, order ``order + 1``. ``order = 2`` is the
    default: exponential sigmas, even in ``log sigma``, make steps in ``phi`` grow several-fold through ``sigma ~
    sigma_data``, and a quadratic extrapolated over them amplifies a trained network's roughness (on a joint
    audio-video network ``order = 3`` landed 3x farther from its 100-step result at 10 steps than ``order = 2``), while
    on smooth exact denoisers ``order = 3`` can be closer (4x on an anisotropic Gaussian; docs/core.md). Warm-up and
    lower-order final steps as the other multistep samplers; the step to ``sigma = 0`` returns the denoised estimate.
    ``sigma_data``: the data's standard deviation (:func:`mmdiff.core.sample` passes its own).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"trig_pc: order must be 1, 2 or 3, got {order!r}")
    if not (isinstance(sigma_data, (int, float)) and sigma_data > 0):
        raise ValueError(f"trig_pc: sigma_data must be the data's standard deviation (> 0), got {sigma_data!r}")
    sig = sigmas.tolist()
    steps, sd = len(sig) - 1, float(sigma_data)
    phis = [math.atan(s / sd) for s in sig]
    u = x.float() / math.hypot(sig[0], sd)  # (B, ...), unit scale at every sigma for data of scale sigma_data
    history: list[tuple[float, Tensor]] = []  # (phi, F), newest last, at most `order`
    previous = None  # (u at the previous step's start, the history length its predictor used)
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        c = math.hypot(sigma, sd)
        x = u * c
        denoised = _denoise(denoiser, x, sigma)
        f = (denoised * (c * c) - x * (sd * sd)) / (sigma * sd * c)
        if corrector and previous is not None:
            u_before, used = previous
            points = [*history[-used:], (phis[i], f)]
            weights = _adams_weights([phi for phi, _ in points], phis[i - 1], phis[i])
            u = u_before - sum(w * f_k for w, (_, f_k) in zip(weights, points))
        history = [*history, (phis[i], f)][-order:]
        if sigma_next == 0:
            x = denoised
        else:
            steps_left = steps - i if lower_order_final else steps
            used = min(order, len(history), steps_left)
            weights = _adams_weights([phi for phi, _ in history[-used:]], phis[i], phis[i + 1])
            previous = (u, used)
            u = u - sum(w * f_k for w, (_, f_k) in zip(weights, history[-used:]))
            x = u * math.hypot(sigma_next, sd)
        _report(callback, i, sigma, sigma_next, x, denoised)
    return x


#: Samplers by name, for :func:`mmdiff.core.sample` and configs.
SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": ddpm,
    "ddim": ddim,
    "euler": euler,
    "euler_ancestral": euler_ancestral,
    "heun": heun,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_3m": dpmpp_3m,
    "dpmpp_3m_sde": dpmpp_3m_sde,
    "unipc": unipc,
    "trig_pc": trig_pc,
}

#: The samplers that draw fresh noise at every step by default (``ddim`` and ``euler`` only with ``eta`` / churn).
STOCHASTIC = frozenset({"ddpm", "euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde"})


#: Denoiser calls a sampler makes for ``steps`` steps (the cost axis of the benchmark).
def denoiser_calls(name: str, steps: int) -> int:
    return 2 * steps - 1 if name == "heun" else steps
