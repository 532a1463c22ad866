"""Sampler accuracy against cost on a problem with a known answer.

Every sampler in :data:`mmdiff.core.SAMPLERS` is run with the *exact* denoiser of the 8-mode 2-D ring
(:meth:`mmdiff.core.GaussianMixture.ring`), so there is no learned-model error: the only gap between the samples and
the true distribution is the sampler's discretisation error (plus Monte-Carlo noise). We report the sliced
Wasserstein distance (p = 1) between ``n`` samples and ``n`` true samples as a function of the number of denoiser
evaluations (NFE), the cost that matters in practice. Two references frame the table: the *floor* (the SWD between
two independent true sample sets of size ``n``: the Monte-Carlo noise level, itself one noisy draw, so converged
samplers land around it, above or below) and DDPM at 500 and 1000 steps (close to the exact reverse process).

    python benchmarks/samplers.py --out benchmarks/results          # full run (about 14 minutes on 2 cores)
    python benchmarks/samplers.py --out /tmp/bench --quick          # smoke test

Writes ``samplers.md`` (the table, also printed) and ``samplers.png`` (log-log SWD vs NFE) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

from mmdiff.core import SAMPLERS, GaussianMixture, sample
from mmdiff.core.samplers import denoiser_calls
from mmdiff.metrics import sliced_wasserstein

NFES = (5, 10, 15, 20, 30, 50, 100)
QUICK_NFES = (5, 10, 20)


def steps_for(name: str, nfe: int) -> int:
    """The most steps whose denoiser calls do not exceed ``nfe``."""
    return max(s for s in range(1, nfe + 1) if denoiser_calls(name, s) <= nfe)


def run(mixture: GaussianMixture, reference: torch.Tensor, name: str, steps: int) -> tuple[float, int]:
    """SWD of ``sampler=name`` at ``steps`` against ``reference``, and the denoiser calls it actually made."""
    calls = 0

    def denoiser(x, sigma):
        nonlocal calls
        calls += 1
        return mixture.denoise(x, sigma)

    x = sample(denoiser, shape=reference.shape, sampler=name, steps=steps, seed=0)
    return sliced_wasserstein(x, reference), calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=65536, help="samples per set (default 65536)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="n=4096 and NFE 5, 10, 20 only")
    args = parser.parse_args()
    n, nfes = (4096, QUICK_NFES) if args.quick else (args.n, NFES)
    start = time.perf_counter()

    mixture = GaussianMixture.ring()
    reference = mixture.sample(n, torch.Generator().manual_seed(1))
    floor = sliced_wasserstein(mixture.sample(n, torch.Generator().manual_seed(2)), reference)

    rows = {}
    for name in SAMPLERS:
        rows[name] = []
        for nfe in nfes:
            swd, calls = run(mixture, reference, name, steps_for(name, nfe))
            assert calls <= nfe, (name, nfe, calls)
            rows[name].append((swd, calls))
        print(f"{name:16s}" + " ".join(f"{swd:.4f}" for swd, _ in rows[name]), flush=True)
    ddpm_ref = {steps: run(mixture, reference, "ddpm", steps)[0] for steps in (500, 1000)}
    wall = time.perf_counter() - start

    def cell(swd: float, calls: int, nfe: int) -> str:
        return f"{swd:.4f}" if calls == nfe else f"{swd:.4f} ({calls})"

    machine = f"{platform.platform(terse=True)}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    lines = [
        f"Sliced W1 (256 projections) to the true `GaussianMixture.ring()` vs denoiser calls (NFE); exact denoiser, "
        f"Karras sigmas 0.002..80, seed 0. n = {n}; {machine}; {datetime.date.today()}; wall time {wall:.0f} s.",
        "",
        "| sampler | " + " | ".join(f"NFE {nfe}" for nfe in nfes) + " |",
        "|---|" + "---:|" * len(nfes),
        *(f"| {name} | " + " | ".join(cell(*r, nfe) for r, nfe in zip(rs, nfes)) + " |" for name, rs in rows.items()),
        f"| floor (two true sets) | {floor:.4f} |" + " |" * (len(nfes) - 1),
        *(f"| ddpm, {s} steps | {v:.4f} |" + " |" * (len(nfes) - 1) for s, v in ddpm_ref.items()),
        "",
        "Numbers in parentheses: the NFE actually used where a sampler cannot hit the target exactly "
        "(heun makes 2 * steps - 1 calls).",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "samplers.md").write_text(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, (name, rs) in enumerate(rows.items()):  # varied styles: ddim = euler and ddpm = euler_ancestral overlap
        style = dict(marker="os^vD"[i % 5], ls=("-", ":")[i % 2], ms=4, mfc="none")
        ax.plot([c for _, c in rs], [s for s, _ in rs], label=name, **style)
    ax.axhline(floor, color="k", ls="--", lw=1, label=f"floor (n={n})")
    ax.axhline(ddpm_ref[500], color="gray", ls="--", lw=1, label="ddpm, 500 steps")
    ax.set(xscale="log", yscale="log", xlabel="denoiser evaluations (NFE)", ylabel="sliced W1 to the true ring")
    ax.set_xticks(nfes, [str(nfe) for nfe in nfes])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_title("Samplers on the 8-mode ring, exact denoiser")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "samplers.png", dpi=120)
    print(f"wrote {args.out / 'samplers.md'} and {args.out / 'samplers.png'} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
