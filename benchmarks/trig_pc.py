"""Few-call accuracy of ``trig_pc`` (Adams predictor-corrector in TrigFlow's angle frame) against the default ``unipc``.

Issue 15's measure, as its text gives it: on the known-answer mixtures with their exact denoisers, the sliced
Wasserstein distance of ``n = 40,000`` samples to as many fresh true samples, averaged over 4 seeds (starting noise
seed ``s``, true samples seed ``100 + s``), divided by the same configuration's own converged distance (``CONVERGED``
steps over the same range, same seeds). Only ``uneven x1`` and the ring run: every sampler here is equivariant to the
data's scale when told ``sigma_data``, so ``uneven x0.1`` and ``x10`` give the ratios of ``x1`` exactly.

Rows (every starting noise ``z`` scaled to ``sqrt(sigma_max^2 + sigma_data^2)``, the marginal's scale for data of
that size, so a start far above the data costs no extra mean bias):

* ``unipc``: ``sample()``'s default sampler and spacing (exponential over 0.01 .. 20 sigma_data);
* ``trig_pc`` (``order=3``): the same sigmas;
* ``trig_pc, 80 -> 2``: start at 80 sigma_data and go in one step to 2 sigma_data (where the data's marginal is close
  to a Gaussian, whose trajectory is exact in the angle frame), then exponential down to 0.01 sigma_data.

    python benchmarks/trig_pc.py --out benchmarks/results   # about 10 min on 2 CPU cores
    python benchmarks/trig_pc.py --out /tmp/bench --quick   # smoke test
"""

from __future__ import annotations

import datetime
import math
import time

import torch
from _common import begin, bench_parser

from mmdiff.core import SAMPLERS
from mmdiff.core.gmm import known_answer_mixtures
from mmdiff.core.spacing import exponential_sigmas, jump_sigmas
from mmdiff.metrics import sliced_wasserstein

N, SEEDS, CONVERGED, NFES = 40_000, range(4), 100, (5, 10, 20)
PROBLEMS = ("uneven x1", "ring")
ROWS = {  # label -> (sampler, sigma_max / sigma_data, first step's end / sigma_data or None)
    "unipc (sample() default)": ("unipc", 20.0, None),
    "trig_pc": ("trig_pc", 20.0, None),
    "trig_pc, 80 -> 2": ("trig_pc", 80.0, 2.0),
}
#: Options of every row's sampler: ``trig_pc`` at ``order=3``, the order of the committed table (2026-11-26; the
#: sampler's default was 3 until 2026-11-28).
OPTIONS = {"unipc": {}, "trig_pc": {"order": 3}}


def sigmas(steps: int, sd: float, top: float, jump: float | None):
    """``steps + 1`` sigmas: exponential over 0.01 .. ``top`` sigma_data, or ``top`` then exponential from ``jump``."""
    if jump is None:
        return exponential_sigmas(steps, 0.01 * sd, top * sd)
    return jump_sigmas(steps, 0.01 * sd, jump * sd, top * sd)


def distance(mixture, sampler: str, sigma_list, seed: int, n: int | None = None) -> float:
    """Sliced Wasserstein distance of ``n`` (default :data:`N`) samples from noise seed ``seed`` to as many true ones
    (seed ``100 + seed``); the start is scaled to the marginal's size at ``sigma_list[0]``."""
    n = n or N
    sd = mixture.std
    z = torch.randn(n, mixture.dim, generator=torch.Generator().manual_seed(seed))
    options = {**OPTIONS[sampler], **({"sigma_data": sd} if sampler == "trig_pc" else {})}
    x = SAMPLERS[sampler](mixture.denoise, z * math.hypot(float(sigma_list[0]), sd), sigma_list, **options)
    return sliced_wasserstein(x, mixture.sample(n, torch.Generator().manual_seed(100 + seed)))


def main() -> None:
    global N, SEEDS, CONVERGED
    args = bench_parser(__doc__, "n = 4096, 2 seeds, 40 converged steps").parse_args()
    if args.quick:
        N, SEEDS, CONVERGED = 4096, range(2), 40
    begin()
    mixtures = known_answer_mixtures()
    lines = [
        "# trig_pc against unipc at few calls",
        "",
        f"`python benchmarks/trig_pc.py{' --quick' if args.quick else ''}`"
        f" ({datetime.date.today()}, 2 CPU threads). n = {N}, seeds {list(SEEDS)}; each cell is the row's mean"
        f" distance over the seeds divided by its mean {CONVERGED}-step distance (last column).",
        "",
    ]
    lines += ["| row | problem | " + " | ".join(f"NFE {k}" for k in NFES) + f" | {CONVERGED} steps |"]
    lines += ["|---|---|" + "---:|" * (len(NFES) + 1)]
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    for label, (sampler, top, jump) in ROWS.items():
        for problem in PROBLEMS:
            mixture = mixtures[problem]
            mean = {}
            for steps in (CONVERGED, *NFES):
                sig = sigmas(steps, mixture.std, top, jump)
                mean[steps] = sum(distance(mixture, sampler, sig, s) for s in SEEDS) / len(SEEDS)
            cells = [f"{mean[k] / mean[CONVERGED]:.2f}x" for k in NFES]
            lines.append(f"| {label} | {problem} | " + " | ".join(cells) + f" | {mean[CONVERGED]:.5f} |")
            print(lines[-1], flush=True)
    lines += ["", f"Wall time {time.time() - start:.0f} s."]
    (args.out / "trig_pc.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
