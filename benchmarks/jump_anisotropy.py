"""Why a long first step (``jump_sigmas``) is no default: it is exact only for data that is isotropic at its scale.

On the known-answer mixtures ``trig_pc`` over ``jump_sigmas(10, 0.01, 2, 80)`` comes closest to issue 15's 10-call
goal (``benchmarks/trig_pc.py``), yet on a trained audio preset it lands 0.24 from the ODE's solution at 10 and at 20
steps (``benchmarks/results/sampler_defaults_trig_pc.md``). This checks the explanation on Gaussian data, whose
probability-flow ODE has a closed form: for ``x0 ~ N(m, diag(lam))`` the point ``x`` at ``sigma0`` flows to
``m + sqrt((lam + s^2) / (lam + sigma0^2)) (x - m)`` at ``s``. Every sampler run ends with the denoising step from
``sigma_min``, so the reference is the exact solution at ``sigma_min`` denoised exactly.

Three data sets in 64 dims, each of unit variance per dimension: isotropic (``lam = 1``), anisotropic (variances
log-spaced over 1e-3 .. 4, normalised to mean 1, as log-mel bins and their correlations give many directions of small
variance), and the anisotropic one with a non-zero mean (scale about 1.2 with it). Cells: RMS distance to the exact
result over 2000 starting points (the data's RMS is about 1), at 10, 20 and 100 steps.

    python benchmarks/jump_anisotropy.py --out benchmarks/results   # a few seconds
"""

from __future__ import annotations

import datetime
import math
import time

import torch
from _common import bench_parser

from mmdiff.core import SAMPLERS
from mmdiff.core.spacing import exponential_sigmas, jump_sigmas

DIM, POINTS, STEPS, SIGMA_MIN = 64, 2000, (10, 20, 100), 0.01


def _exponential(steps: int) -> torch.Tensor:
    """``sample()``'s default spacing for data of unit scale: exponential over 20 .. 0.01, then 0."""
    return exponential_sigmas(steps, SIGMA_MIN, 20.0)


def _jump(top: float):
    """The sigma lists that start at ``top`` and go in one step to 2, then exponentially to 0.01 (and 0)."""
    return lambda steps: jump_sigmas(steps, SIGMA_MIN, 2.0, top)


ORDER_3 = {"order": 3}
ROWS = {  # label -> (sampler, its options, sigma list for a number of steps)
    "`unipc`, exponential 20 .. 0.01 (the defaults)": ("unipc", {}, _exponential),
    "`trig_pc`, exponential 20 .. 0.01": ("trig_pc", {}, _exponential),
    "`trig_pc` (`order=3`), exponential 20 .. 0.01": ("trig_pc", ORDER_3, _exponential),
    "`trig_pc` (`order=3`), 80 then 2 .. 0.01 (`jump_sigmas`)": ("trig_pc", ORDER_3, _jump(80.0)),
    "`trig_pc` (`order=3`), 20 then 2 .. 0.01": ("trig_pc", ORDER_3, _jump(20.0)),
    "`unipc`, 80 then 2 .. 0.01": ("unipc", {}, _jump(80.0)),
}


def gaussians() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (mean (DIM,), variances (DIM,))}`` in float64."""
    aniso = torch.logspace(-3, math.log10(4.0), DIM, dtype=torch.float64)
    aniso = aniso / aniso.mean()
    mean = 0.7 * torch.randn(DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    zero = torch.zeros(DIM, dtype=torch.float64)
    return {
        "isotropic": (zero, torch.ones(DIM, dtype=torch.float64)),
        "anisotropic": (zero, aniso),
        "anisotropic, mean 0.7": (mean, aniso),
    }


def error(mean, lam, sampler: str, sigmas: torch.Tensor, **options) -> float:
    """RMS distance of ``sampler``'s result to the exact one from the same points of the marginal at ``sigmas[0]``."""

    def denoise(x, sigma, **_):  # E[x0 | x] for x0 ~ N(mean, diag(lam)): (B, DIM)
        s2 = sigma.double().reshape(-1, 1) ** 2
        return (mean + lam / (lam + s2) * (x.double() - mean)).float()

    top = float(sigmas[0])
    z = torch.randn(POINTS, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = mean + z * torch.sqrt(lam + top**2)  # (POINTS, DIM), exact samples of the marginal at `top`
    at_min = mean + torch.sqrt((lam + SIGMA_MIN**2) / (lam + top**2)) * (x - mean)  # the ODE's solution
    reference = mean + lam / (lam + SIGMA_MIN**2) * (at_min - mean)  # its final denoising step
    scale = math.sqrt(float(lam.mean() + mean.var(unbiased=False)))  # sigma_data
    if sampler == "trig_pc":
        options = {"sigma_data": scale, **options}
    result = SAMPLERS[sampler](denoise, x.float(), sigmas, **options).double()
    return float((result - reference).pow(2).mean().sqrt())


def main() -> None:
    args = bench_parser(__doc__, "the same (it is quick)").parse_args()
    start = time.time()
    lines = [
        "# A long first step and anisotropic data",
        "",
        f"`python benchmarks/jump_anisotropy.py` ({datetime.date.today()}). Gaussian data in {DIM} dims with its"
        f" closed-form ODE; RMS distance of each sampler's result to the exact one from the same {POINTS} starting"
        " points (data RMS about 1), at " + ", ".join(map(str, STEPS)) + " steps.",
        "",
        "| data | row | " + " | ".join(f"{k} steps" for k in STEPS) + " |",
        "|---|---|" + "---:|" * len(STEPS),
    ]
    for data, (mean, lam) in gaussians().items():
        for label, (sampler, options, sigma_list) in ROWS.items():
            cells = [f"{error(mean, lam, sampler, sigma_list(k), **options):.4f}" for k in STEPS]
            lines.append(f"| {data} | {label} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    lines += ["", f"Wall time {time.time() - start:.0f} s on CPU."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "jump_anisotropy.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
