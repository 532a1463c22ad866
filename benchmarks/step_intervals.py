"""Where the error of a 10-step sample comes from: each interval of the default sigma list, integrated finely.

Issue 15 asks ``sample()``'s defaults for 10 calls within 1.5x of their converged distance on the known-answer
mixtures; ``unipc`` over the default list (exponential 20 .. 0.01 sigma_data) is at about 3x on ``uneven x1``. To find
which of the list's intervals that error belongs to, each interval ``j`` in turn is replaced by 19 exponential
substeps, the rest of the list kept: the distance that remains is what the other intervals make (the multistep
history runs on through the substeps). An interval whose refinement takes the distance down to the converged one
holds the whole error; one whose refinement changes nothing holds none of it.

* Mixtures (``uneven x1`` and the ring): issue 15's measure, the sliced Wasserstein distance of ``n = 40,000``
  samples to as many true ones, the mean over 4 seeds over the default list's 200-step distance
  (``sigma_lists.py``'s ``mixture_distance``).
* ``--run RUN`` (repeatable): a trained run's RMS distance in model space to its ODE solution from the same noise
  (200 exponential steps, 8 seeds, EMA weights, sigma_data 1; ``sigma_lists.py``'s measure).

The last interval (to sigma = 0) is the denoising step and is left alone.

    python benchmarks/step_intervals.py --run RUN   # about 4 min on 2 CPU cores, plus 1-2 min per run
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import torch
from _common import begin, bench_parser
from sigma_lists import CONVERGED, SIGMA_MAX, SIGMA_MIN, mixture_distance, solution_distances

from mmdiff.core.gmm import known_answer_mixtures
from mmdiff.core.spacing import exponential_sigmas

STEPS, SUBSTEPS, PROBLEMS = 10, 19, ("uneven x1", "ring")
SEEDS, RUN_SEEDS = range(4), 8


def refined(steps: int, interval: int, substeps: int = SUBSTEPS) -> torch.Tensor:
    """The default ``steps``-step list (in units of sigma_data, ending at 0) with interval ``interval`` (from its
    ``interval``-th sigma to the next, both nonzero) split into ``substeps`` exponential substeps."""
    base = exponential_sigmas(steps, SIGMA_MIN, SIGMA_MAX).tolist()
    high, low = base[interval], base[interval + 1]
    if low == 0:
        raise ValueError(f"interval {interval} ends at sigma 0: the denoising step, not refined")
    inner = exponential_sigmas(substeps + 1, low, high).tolist()[1:-2]  # strictly between high and low
    return torch.tensor([*base[: interval + 1], *inner, *base[interval + 1 :]], dtype=torch.float64)


def lists(steps: int = STEPS) -> dict[str, torch.Tensor]:
    """Label -> sigma list: the default, then the default with each interval above sigma = 0 refined."""
    base = exponential_sigmas(steps, SIGMA_MIN, SIGMA_MAX).tolist()
    found = {"the default list": torch.tensor(base, dtype=torch.float64)}
    for j in range(steps - 1):
        found[f"interval {j} refined ({base[j]:.3g} -> {base[j + 1]:.3g})"] = refined(steps, j)
    return found


def mixture_column(problem: str, candidates: dict[str, torch.Tensor]) -> dict[str, float]:
    """Issue 15's ratio for each list on ``problem``: the mean distance over :data:`SEEDS` over the default's
    200-step mean distance."""
    mixture = known_answer_mixtures()[problem]
    mean = lambda sigmas: sum(mixture_distance(mixture, sigmas, s) for s in SEEDS) / len(SEEDS)  # noqa: E731
    converged = mean(exponential_sigmas(CONVERGED, SIGMA_MIN, SIGMA_MAX))
    return {label: mean(sigmas) / converged for label, sigmas in candidates.items()}


def main() -> None:
    parser = bench_parser(__doc__, "one seed, uneven x1 only")
    parser.add_argument("--run", type=Path, action="append", default=[], help="a trained run (repeatable)")
    args = parser.parse_args()
    global SEEDS, PROBLEMS
    if args.quick:
        SEEDS, PROBLEMS = range(1), PROBLEMS[:1]
    begin()
    start = time.time()
    candidates = lists()
    columns = {}
    for problem in PROBLEMS:
        column = columns[f"{problem} (x converged)"] = mixture_column(problem, candidates)
        print(problem, {k: round(v, 2) for k, v in column.items()}, flush=True)
    torch.set_num_threads(1)  # small network calls: one thread is faster on a shared 2-core machine
    for run in args.run:
        column = columns[f"`{run}` (RMS)"] = solution_distances(run, candidates, RUN_SEEDS)
        print(run, {k: round(v, 4) for k, v in column.items()}, flush=True)
    lines = [
        "# Where a 10-step sample's error comes from",
        "",
        f"`python benchmarks/step_intervals.py{''.join(f' --run {r}' for r in args.run)}"
        f"{' --quick' if args.quick else ''}` ({datetime.date.today()}, 2 CPU threads), `unipc` over `sample()`'s"
        f" default list ({STEPS} steps, exponential {SIGMA_MAX:g} .. {SIGMA_MIN:g} sigma_data), each interval in turn"
        f" split into {SUBSTEPS} substeps. Mixtures: issue 15's ratio, n = 40,000, seeds {list(SEEDS)}. Runs: RMS"
        f" distance to the run's {CONVERGED}-step ODE solution from the same noise, {RUN_SEEDS} seeds.",
        "",
        "| list | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label in candidates:
        cells = [f"{c[label]:.2f}x" if "converged" in name else f"{c[label]:.4f}" for name, c in columns.items()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {time.time() - start:.0f} s."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_intervals.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
