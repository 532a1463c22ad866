"""Few-step sampler accuracy on problems with a known answer: mmdiff's samplers against diffusers and k-diffusion.

Every sampler runs with the *exact* denoiser of each Gaussian mixture in
:func:`mmdiff.core.gmm.known_answer_mixtures` (one five-mode shape with sharp and broad modes at data scales 0.1, 1
and 10, and the 8-mode ring), so there is no learned-model error: the only gap between the samples and the true
distribution is the sampler's discretisation error plus Monte-Carlo noise. For each number of denoiser evaluations
(NFE 5, 10, 15, 20, 30, 50) we report the sliced Wasserstein distance (:func:`mmdiff.metrics.sliced_wasserstein`,
p = 1, 256 projections) between ``n`` samples and ``n`` fresh true samples, and its ratio to the *same sampler's own
converged distance* (same seed, 200 steps): issue 15's goal is a ratio within 1.5 at 10 calls and 1.1 at 20. The
ratio removes the Monte-Carlo floor, which every converged sampler shares, from the comparison; the *floor* row (the
distance between two independent true sets of size ``n``) says how large that floor is.

Rows, all from the same starting noise (seed 0; one standard normal draw scaled by each row's first sigma) and the
same denoiser, counting the calls each one actually makes:

* every sampler in :data:`mmdiff.core.SAMPLERS` (new ones appear automatically) through :func:`mmdiff.core.sample`
  with ``sigma_data=`` the mixture's standard deviation (when ``sample`` takes it), and ``sample()`` with its
  defaults (no sampler named);
* diffusers' ``DPMSolverMultistepScheduler``, ``UniPCMultistepScheduler`` and ``EulerDiscreteScheduler`` through
  mmdiff's bridge (:class:`mmdiff.core.DiffusersSampler`): the schedulers' defaults (second order, lower-order final
  steps) with ``use_karras_sigmas=True`` on DDPM's linear beta table, so their sigmas run from 157 down to 0.01
  whatever the data's scale, as they would for a diffusers model;
* k-diffusion's deterministic fixed-NFE samplers (``sample_euler``, ``sample_heun``, ``sample_dpm_2``,
  ``sample_lms``, ``sample_dpmpp_2m``, ``sample_dpmpp_3m_sde`` with ``eta=0``, and ``sample_dpm_fast``) on
  ``get_sigmas_karras(steps, sigma_min, sigma_max, rho=7)`` over the sigma range that ``sample()`` uses by default
  for that problem (read off a probe run). k-diffusion is used only here and is optional: without it those rows are
  skipped with a note. Its package ``__init__`` imports torchvision, wandb-era training code and more, so only
  ``k_diffusion/sampling.py`` is loaded, from the installed file, with its one helper (``append_dims``) supplied.
  Install it without its dependencies, plus the two small ones ``sampling.py`` imports::

      pip install --no-deps k-diffusion && pip install torchsde torchdiffeq

A sampler whose step count cannot hit an NFE exactly (Heun-type: ``2 * steps - 1`` calls) gets the most steps that
stay within it; the calls it made are given in the cell.

    python benchmarks/samplers.py --out benchmarks/results          # full run (see the wall time in samplers.md)
    python benchmarks/samplers.py --out /tmp/bench --quick          # smoke test: n=4096, NFE 5, 10, 20, 2 problems

Writes ``samplers.md`` (per-problem tables and a summary, also printed) and ``samplers.png`` (one log-log panel of
SWD against NFE per problem) to ``--out``.
"""

from __future__ import annotations

import datetime
import importlib.util
import inspect
import math
import os
import platform
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import begin, bench_parser
from torch import Tensor

from mmdiff.core import SAMPLERS, DiffusersSampler, GaussianMixture, NoiseSource, sample
from mmdiff.core.gmm import known_answer_mixtures
from mmdiff.metrics import sliced_wasserstein

NFES = (5, 10, 15, 20, 30, 50)
QUICK_NFES = (5, 10, 20)
QUICK_PROBLEMS = ("uneven x0.1", "ring")
N_FULL, N_QUICK = 8192, 4096
CONVERGED_STEPS = 200  # the "own converged distance" each ratio divides by
GOAL = {10: 1.5, 20: 1.1}  # issue 15: worst ratio allowed at 10 and 20 calls
SEED = 0
DIFFUSERS = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "EulerDiscreteScheduler")
DIFFUSERS_KWARGS = {"use_karras_sigmas": True}
K_SAMPLERS = {  # k-diffusion function -> keyword arguments (deterministic, fixed number of calls)
    "sample_euler": {},
    "sample_heun": {},
    "sample_dpm_2": {},
    "sample_lms": {},
    "sample_dpmpp_2m": {},
    "sample_dpmpp_3m_sde": {"eta": 0.0},
    "sample_dpm_fast": {},
}
# sample() takes the data's scale (which sets its default sigma range) once issue 15's defaults land
SIGMA_DATA_KEYWORD = "sigma_data" in inspect.signature(sample).parameters

Denoiser = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Method:
    """One row: ``run(denoiser, mixture, n, steps) -> samples (n, dim)``."""

    name: str
    family: str  # "mmdiff", "diffusers" or "k-diffusion"
    run: Callable[[Denoiser, GaussianMixture, int, int], Tensor]


def _sigma_data(mixture: GaussianMixture) -> dict[str, float]:
    return {"sigma_data": mixture.std} if SIGMA_DATA_KEYWORD else {}


def mmdiff_method(name: str | None) -> Method:
    """``sample(sampler=name)``, or ``sample()`` with its defaults when ``name`` is None."""
    chosen = {} if name is None else {"sampler": name}

    def run(denoiser, mixture, n, steps):
        return sample(denoiser, (n, mixture.dim), steps=steps, seed=SEED, **chosen, **_sigma_data(mixture))

    return Method("sample() defaults" if name is None else name, "mmdiff", run)


def diffusers_method(scheduler: str) -> Method:
    """A diffusers scheduler through mmdiff's bridge, with ``DIFFUSERS_KWARGS``."""
    sampler = DiffusersSampler(scheduler, **DIFFUSERS_KWARGS)

    def run(denoiser, mixture, n, steps):
        return sample(denoiser, (n, mixture.dim), sampler=sampler, steps=steps, seed=SEED)

    return Method(f"diffusers {scheduler.removesuffix('Scheduler')}", "diffusers", run)


def load_k_sampling() -> types.ModuleType | None:
    """k-diffusion's ``sampling`` module loaded from the installed file, or None (with a printed note) without it.

    The package ``__init__`` imports every submodule (torchvision, clean-fid, ...); ``sampling.py`` itself only needs
    scipy, torchsde, torchdiffeq, tqdm and ``utils.append_dims``, which a stand-in ``utils`` module provides.
    """
    spec = importlib.util.find_spec("k_diffusion")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        print("note: k-diffusion is not installed; its rows are skipped (see the module docstring)", flush=True)
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    package, utils = types.ModuleType("_k_diffusion"), types.ModuleType("_k_diffusion.utils")
    package.__path__ = [str(folder)]
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package.utils = utils
    sys.modules.update({"_k_diffusion": package, "_k_diffusion.utils": utils})
    file_spec = importlib.util.spec_from_file_location("_k_diffusion.sampling", folder / "sampling.py")
    module = importlib.util.module_from_spec(file_spec)
    try:
        file_spec.loader.exec_module(module)
    except ImportError as error:  # torchsde or torchdiffeq missing
        print(f"note: k-diffusion's sampling.py does not import ({error}); its rows are skipped", flush=True)
        return None
    return module


def default_sigma_range(mixture: GaussianMixture) -> tuple[float, float]:
    """``(sigma_min, sigma_max)`` that ``sample()`` uses by default for ``mixture``: the smallest and largest sigma
    an Euler probe run (which calls the denoiser at every sigma but the final 0) passes to the denoiser."""
    seen: list[float] = []

    def probe(x, sigma):
        seen.append(float(sigma[0]))
        return torch.zeros_like(x)

    sample(probe, (1, mixture.dim), sampler="euler", steps=4, seed=SEED, **_sigma_data(mixture))
    return min(seen), max(seen)


def k_method(k_sampling: types.ModuleType, function: str, kwargs: dict) -> Method:
    """A k-diffusion sampler on Karras sigmas (rho 7) over ``sample()``'s default range, same starting noise."""
    sampler = getattr(k_sampling, function)

    def run(denoiser, mixture, n, steps):
        sigma_min, sigma_max = default_sigma_range(mixture)
        noise = NoiseSource(SEED, n)(torch.zeros(n, mixture.dim))  # (n, dim): sample()'s first draw for seed 0
        if function == "sample_dpm_fast":  # its own log-uniform steps; `steps` is its number of calls
            return sampler(denoiser, noise * sigma_max, sigma_min, sigma_max, steps, disable=True, **kwargs)
        sigmas = k_sampling.get_sigmas_karras(steps, sigma_min, sigma_max, rho=7.0)
        return sampler(denoiser, noise * sigmas[0], sigmas, disable=True, **kwargs)

    name = function.removeprefix("sample_") + "".join(f", {k}={v:g}" for k, v in kwargs.items())
    return Method(f"k-diffusion {name}", "k-diffusion", run)


def all_methods() -> list[Method]:
    methods = [mmdiff_method(name) for name in SAMPLERS] + [mmdiff_method(None)]
    methods += [diffusers_method(name) for name in DIFFUSERS]
    k_sampling = load_k_sampling()
    if k_sampling is not None:
        methods += [k_method(k_sampling, name, kwargs) for name, kwargs in K_SAMPLERS.items()]
    return methods


def counted(mixture: GaussianMixture) -> tuple[Denoiser, list[int]]:
    """The exact denoiser of ``mixture`` and a one-element list counting its calls."""
    calls = [0]

    def denoiser(x, sigma, **_):
        calls[0] += 1
        return mixture.denoise(x, sigma)

    return denoiser, calls


def calls_for(method: Method, mixture: GaussianMixture, steps: int) -> int:
    """Denoiser calls ``method`` makes for ``steps`` steps, measured on a batch of 2."""
    denoiser, calls = counted(mixture)
    method.run(denoiser, mixture, 2, steps)
    return calls[0]


def call_model(method: Method, mixture: GaussianMixture) -> tuple[int, int]:
    """``(a, b)`` with ``calls = a * steps + b`` for ``method``, measured at 3 and 4 steps."""
    c3, c4 = calls_for(method, mixture, 3), calls_for(method, mixture, 4)
    if c4 - c3 < 1:
        raise RuntimeError(f"benchmarks/samplers.py: {method.name} makes {c3} calls at 3 steps and {c4} at 4")
    return c4 - c3, c3 - 3 * (c4 - c3)


def steps_for(model: tuple[int, int], nfe: int) -> int:
    """The most steps whose calls (``a * steps + b``) do not exceed ``nfe``."""
    per_step, offset = model
    return max(1, (nfe - offset) // per_step)


def measure(method: Method, mixture: GaussianMixture, reference: Tensor, steps: int) -> tuple[float, int]:
    """SWD of ``method`` at ``steps`` to ``reference`` (NaN when the samples are not finite), and its calls."""
    denoiser, calls = counted(mixture)
    x = method.run(denoiser, mixture, reference.shape[0], steps).float()
    swd = sliced_wasserstein(x, reference) if torch.isfinite(x).all() else math.nan
    return swd, calls[0]


def fmt_ratio(r: float) -> str:
    return "diverged" if not math.isfinite(r) else f"{r:.2f}x"


def problem_table(title: str, nfes, rows, converged, floor: float, sigma_range) -> list[str]:
    """Markdown lines for one problem: ``rows[name] = [(swd, calls), ...]`` per NFE; cells 'swd (ratio)'."""

    def cell(swd: float, calls: int, nfe: int, own: float) -> str:
        if not math.isfinite(swd):
            return "diverged"
        used = "" if calls == nfe else f", {calls} calls"
        return f"{swd:.4f} ({fmt_ratio(swd / own)}{used})"

    lines = [
        f"### {title}",
        "",
        f"`sample()`'s default sigma range here: {sigma_range[1]:.4g} .. {sigma_range[0]:.4g}. "
        f"Floor (two true sets): {floor:.4f}.",
        "",
        "| sampler | " + " | ".join(f"NFE {nfe}" for nfe in nfes) + f" | {CONVERGED_STEPS} steps |",
        "|---|" + "---:|" * (len(nfes) + 1),
    ]
    for name, rs in rows.items():
        own, own_calls = converged[name]
        cells = [cell(swd, calls, nfe, own) for (swd, calls), nfe in zip(rs, nfes)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {own:.4f} ({own_calls} calls) |")
    return [*lines, ""]


def summary_table(methods: list[Method], ratios: dict[str, dict[str, dict[int, float]]], nfes) -> list[str]:
    """For each sampler the worst ratio over the problems at the NFEs of ``GOAL``, and the problem it occurs on."""
    goal_nfes = [nfe for nfe in GOAL if nfe in nfes]
    lines = [
        "| sampler | " + " | ".join(f"worst ratio at NFE {nfe} (goal {GOAL[nfe]}x)" for nfe in goal_nfes) + " |",
        "|---|" + "---|" * len(goal_nfes),
    ]
    for method in methods:
        cells = []
        for nfe in goal_nfes:
            by_problem = {p: r[nfe] for p, r in ratios[method.name].items()}
            worst = max(by_problem, key=lambda p: by_problem[p] if math.isfinite(by_problem[p]) else math.inf)
            value = by_problem[worst]
            mark = " ok" if math.isfinite(value) and value <= GOAL[nfe] else ""
            cells.append(f"{fmt_ratio(value)} ({worst}){mark}")
        lines.append(f"| {method.name} | " + " | ".join(cells) + " |")
    return lines


def plot(path: Path, results: dict, floors: dict, nfes, n: int) -> None:
    """One log-log panel of SWD against the calls made per problem; mmdiff solid, diffusers dashed, k-diffusion
    dotted; the floor dashed black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(results)
    cols = min(len(problems), 2)
    fig, axes = plt.subplots(
        math.ceil(len(problems) / cols), cols, figsize=(7 * cols, 5 * math.ceil(len(problems) / cols))
    )
    axes = list(getattr(axes, "flat", [axes]))
    styles = {"mmdiff": "-", "diffusers": "--", "k-diffusion": ":"}
    cmap = matplotlib.colormaps["tab20"]
    for ax, problem in zip(axes, problems):
        for i, (name, (family, rs)) in enumerate(results[problem].items()):
            points = [(calls, swd) for swd, calls in rs if math.isfinite(swd)]
            ax.plot(*zip(*points), ls=styles[family], marker="os^vDP"[i % 6], ms=4, mfc="none", color=cmap(i % 20),
                    label=name)  # fmt: skip
        ax.axhline(floors[problem], color="k", ls="--", lw=1, label=f"floor (n={n})")
        ax.set(xscale="log", yscale="log", xlabel="denoiser calls (NFE)", ylabel="sliced W1 to true samples")
        ax.set_xticks(nfes, [str(nfe) for nfe in nfes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_title(f"GaussianMixture '{problem}', exact denoiser")
    for ax in axes[len(problems) :]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mmdiff_version() -> str:
    """The commit the run used, and whether ``mmdiff/`` had uncommitted changes (what the numbers belong to)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "mmdiff"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "mmdiff (no git)"
    changes = " + uncommitted changes in mmdiff/" if dirty.stdout.strip() else ""
    return f"mmdiff at {head.stdout.strip() or 'unknown commit'}{changes}"


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, f"n={N_QUICK}, NFE 5, 10, 20 and the problems {', '.join(QUICK_PROBLEMS)}")
    parser.add_argument("--n", type=int, default=None, help=f"samples per set (default {N_FULL}, {N_QUICK} quick)")
    parser.add_argument("--converged-steps", type=int, default=CONVERGED_STEPS, help="steps of each own reference")
    args = parser.parse_args(argv)
    load_start, start = begin()
    # One thread, not begin()'s two: these tensors are small ((n, 2) points, n x 5 responsibilities), and with another
    # process on the cores two OpenMP threads made a denoiser call 13 to 200 times slower (measured: 82 ms against
    # 0.4 ms per call at n = 256, 141 ms against 6 ms at n = 8192, load average 5).
    torch.set_num_threads(1)
    n = args.n or (N_QUICK if args.quick else N_FULL)
    nfes = QUICK_NFES if args.quick else NFES
    problems = {k: v for k, v in known_answer_mixtures().items() if not args.quick or k in QUICK_PROBLEMS}
    methods = all_methods()
    print(f"{len(methods)} samplers x {len(problems)} problems, n = {n}; sample() sigma_data=: {SIGMA_DATA_KEYWORD}")

    results: dict[str, dict[str, tuple[str, list[tuple[float, int]]]]] = {}
    ratios: dict[str, dict[str, dict[int, float]]] = {m.name: {} for m in methods}
    floors, tables = {}, []
    for problem, mixture in problems.items():
        reference = mixture.sample(n, torch.Generator().manual_seed(1))  # (n, dim)
        floors[problem] = sliced_wasserstein(mixture.sample(n, torch.Generator().manual_seed(2)), reference)
        rows, converged, results[problem] = {}, {}, {}
        for method in methods:
            converged[method.name] = measure(method, mixture, reference, args.converged_steps)
            rows[method.name], model = [], call_model(method, mixture)
            for nfe in nfes:
                swd, calls = measure(method, mixture, reference, steps_for(model, nfe))
                if calls > nfe:
                    raise RuntimeError(f"benchmarks/samplers.py: {method.name} made {calls} calls for NFE {nfe}")
                rows[method.name].append((swd, calls))
            own = converged[method.name][0]
            ratios[method.name][problem] = {nfe: swd / own for (swd, _), nfe in zip(rows[method.name], nfes)}
            results[problem][method.name] = (method.family, rows[method.name])
            print(f"{problem:12s} {method.name:34s} " + " ".join(f"{s:.4f}" for s, _ in rows[method.name])
                  + f" | {own:.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        tables += problem_table(f"{problem} (data std {mixture.std:.3g})", nfes, rows, converged, floors[problem],
                                default_sigma_range(mixture))  # fmt: skip
    wall = time.perf_counter() - start

    machine = f"{platform.platform(terse=True)}, {os.cpu_count()} CPUs (1 thread), torch {torch.__version__}"
    load = f"1-min load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    sigma_data = "with `sigma_data=` the mixture's std" if SIGMA_DATA_KEYWORD else "(no `sigma_data=` keyword yet)"
    spacing = inspect.signature(sample).parameters["spacing"].default
    k_note = "" if any(m.family == "k-diffusion" for m in methods) else " k-diffusion was not installed: no rows."
    lines = [
        f"Sliced W1 (256 projections) to {n} fresh true samples vs denoiser calls (NFE), exact denoisers of "
        f"`known_answer_mixtures()`; n = {n} samples per set, seed {SEED} for every sampler; mmdiff rows "
        f"through `sample()` {sigma_data} and its default spacing ({spacing}); diffusers schedulers through the "
        "bridge with their defaults and `use_karras_sigmas=True` on DDPM's linear betas (sigma 157 .. 0.01); "
        f"k-diffusion on Karras sigmas (rho 7) over `sample()`'s default range.{k_note} {machine}; "
        f"{mmdiff_version()}; {datetime.date.today()}; wall time {wall:.0f} s; {load}.",
        "",
        f"Cells: SWD (ratio to the same sampler's own distance at {args.converged_steps} steps, and the calls made "
        "where they differ from the NFE). Where the converged distance sits near the floor, ratios near 1 are "
        "within the Monte-Carlo noise.",
        "",
        f"## Summary: worst ratio over the {len(problems)} problems ('ok': within issue 15's goal)",
        "",
        *summary_table(methods, ratios, nfes),
        "",
        "## Per problem",
        "",
        *tables,
    ]
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "samplers.md").write_text(report)
    plot(args.out / "samplers.png", results, floors, nfes, n)
    print(f"wrote {args.out / 'samplers.md'} and {args.out / 'samplers.png'} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
