"""Few steps on trained runs: 10-step samples against 50-step samples from the same noise, with and without a tuned
step schedule (issue 15).

For each trained run (default: the audio and video CPU presets at ``/work/runs/amusic`` and ``/work/runs/vshapes``),
with the run's own generation settings (sampler, spacing, guidance scale, conditions: labels cycling through the
classes):

1. **Paired distance** on ``--n`` held-out seeds (0, 1, ...): the RMS distance in model space between each seed's
   10-step result and its 50-step result from the same starting noise, for the run's spacing and for a schedule
   tuned by ``mmdiff tune-steps`` (``steps=10``, calibration seeds 10000.., ``--calibration`` samples,
   ``--evaluations`` few-step runs). For scale, the 25- and 50-step results against a 100-step one (same spacing).
   The tuned fit targets a 100-step Karras result over the same range, not the 50-step one scored here.
2. **Eval metrics** (``--eval N`` > 0): the run's evaluator (``mmdiff eval``) on ``N`` clips made with 10 steps, 10
   tuned steps and 50 steps.

The tune-steps command runs on a copy of the run made of symbolic links plus its own ``step_schedules.json``, so the
trained runs are not modified.

    python benchmarks/few_steps.py                                  # both presets (about 10 minutes on 2 cores)
    python benchmarks/few_steps.py --runs /work/runs/amusic --n 4 --calibration 4 --evaluations 10 --eval 0 \\
        --out /tmp/bench                                            # smoke test

Writes ``few_steps.md`` (the tables, also printed) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import mmdiff
from mmdiff.checkpoints import STEP_SCHEDULES
from mmdiff.cli import main as cli
from mmdiff.conditioners import guidance_null
from mmdiff.core import sample
from mmdiff.generation import default_sigmas


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMS distance between paired samples ``(B, ...)``, in the model's units."""
    return float((a.double() - b.double()).pow(2).mean().sqrt())


def linked_copy(run: Path, into: Path) -> Path:
    """A copy of ``run`` made of symbolic links, where tune-steps can write its ``step_schedules.json``."""
    copy = into / run.name
    copy.mkdir()
    for item in run.iterdir():
        if item.name != STEP_SCHEDULES:
            (copy / item.name).symlink_to(item.resolve())
    return copy


def measure(run: Path, args: argparse.Namespace, work: Path) -> tuple[list[str], list[str], dict]:
    """The paired-distance rows, the eval rows and the fit's details for one run."""
    start = time.perf_counter()
    copy = linked_copy(run, work)
    code = cli(
        [
            "tune-steps",
            f"run={copy}",
            f"steps={args.steps}",
            f"n={args.calibration}",
            f"evaluations={args.evaluations}",
            "device=cpu",
            "progress=false",
        ]
    )
    if code != 0:
        raise SystemExit(f"mmdiff tune-steps failed on {run} (exit {code})")
    tune_s = time.perf_counter() - start
    pipe = mmdiff.load(copy, device="cpu")
    options = pipe.defaults.replace(tuned=False, sigmas=None)
    entry = pipe.tuned_schedule(options.sampler, args.steps)
    tuned = entry["sigmas"] if entry is not None else None

    n, seeds = args.n, list(range(args.n))
    shape = (n, *pipe.adapter.sample_shape(options.length))
    cond = pipe.conditioner.request(n, "cpu")
    null = guidance_null(pipe.conditioner, n, "cpu", {})
    guided = options.guidance_scale != 1.0 and bool(null)

    def run_with(sigmas) -> torch.Tensor:
        return sample(
            pipe.denoiser,
            shape,
            options.sampler,
            seed=seeds,
            sigmas=sigmas,
            cond=cond,
            guidance_scale=options.guidance_scale if guided else 1.0,
            null_cond=null if guided else None,
            guidance_rescale=options.guidance_rescale,
        )

    schedule = pipe.model.schedule
    x = {s: run_with(default_sigmas(options.replace(steps=s), schedule)) for s in (args.steps, 25, 50, 100)}
    x_tuned = run_with(tuned) if tuned is not None else None
    scale = float(x[50].double().pow(2).mean().sqrt())
    name = run.name
    cell = f"{rms(x_tuned, x[50]):.4f}" if x_tuned is not None else "(no better schedule found)"
    distance = [
        f"| {name} | {options.sampler}, {options.spacing}, guidance {options.guidance_scale:g} | {scale:.3f} | "
        f"{rms(x[args.steps], x[50]):.4f} | {cell} | {rms(x[25], x[100]):.4f} | {rms(x[50], x[100]):.4f} |"
    ]
    fitted = dict(entry["fitted"]) if entry is not None else {}
    fitted.update(sigmas=tuned, tune_s=tune_s)

    evals: list[str] = []
    if args.eval > 0 and pipe.config is not None and pipe.config.get("evaluator") is not None:
        from hydra.utils import instantiate

        evaluator, dataset = instantiate(pipe.config.evaluator), instantiate(pipe.config.data)
        variants = {f"{args.steps} steps, {options.spacing}": {"steps": args.steps, "tuned": False}}
        if tuned is not None:
            variants[f"{args.steps} steps, tuned"] = {"steps": args.steps, "sigmas": tuned}
        variants[f"50 steps, {options.spacing}"] = {"steps": 50, "tuned": False}
        reports = {label: evaluator(pipe, dataset, n=args.eval, **opts) for label, opts in variants.items()}
        metrics = [k for k in next(iter(reports.values()))["generated"] if k in args_metrics(reports)]
        evals.append(f"**{name}**, {args.eval} clips (row `generated` of `mmdiff eval`, seeds 0..):\n")
        evals.append("| metric | " + " | ".join(reports) + " |")
        evals.append("|---|" + "---|" * len(reports))
        for metric in metrics:
            cells = " | ".join(f"{reports[label]['generated'][metric]:.4f}" for label in reports)
            evals.append(f"| {metric} | {cells} |")
        real = next(iter(reports.values())).get("real, held out")
        if real:
            evals.append(f"\nReal held-out clips for scale: {', '.join(f'{k} {v:.4f}' for k, v in real.items())}\n")
    return distance, evals, fitted


def args_metrics(reports: dict) -> set[str]:
    """The metrics every report has a finite value for."""
    rows = [r["generated"] for r in reports.values()]
    return {k for k in rows[0] if all(k in r and math.isfinite(r[k]) for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, default=[Path("/work/runs/amusic"), Path("/work/runs/vshapes")])
    parser.add_argument("--steps", type=int, default=10, help="the few-step count (default 10)")
    parser.add_argument("--n", type=int, default=16, help="held-out seeds for the paired distance (default 16)")
    parser.add_argument("--calibration", type=int, default=8, help="tune-steps n= (default 8)")
    parser.add_argument("--evaluations", type=int, default=40, help="tune-steps evaluations= (default 40)")
    parser.add_argument("--eval", type=int, default=32, help="clips for the eval metrics (0: skip; default 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2; 1 beside a busy job)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load, began = os.getloadavg()[0], time.perf_counter()
    if load > 0.5:
        print(f"warning: load average {load:.1f}; a busy machine slows this down", flush=True)

    distances, evals, fits = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            print(f"{run} ...", flush=True)
            d, e, f = measure(run, args, Path(tmp))
            distances += d
            evals += e
            fits[run.name] = f
    wall = time.perf_counter() - began

    lines = [
        "# Few steps on trained runs: 10 against 50 steps from the same noise",
        "",
        f"`python benchmarks/few_steps.py {' '.join(sys.argv[1:] if argv is None else argv)}`: "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {wall / 60:.1f} min on CPU "
        f"({args.threads} torch threads, load average {load:.1f} at the start), torch {torch.__version__}.",
        "",
        f"RMS distance in model space between paired samples ({args.n} held-out seeds, the run's conditions and "
        "guidance); each column compares two results from the same starting noise. `tuned`: the "
        f"schedule `mmdiff tune-steps steps={args.steps} n={args.calibration} evaluations={args.evaluations}` "
        "stored (calibration seeds 10000.., disjoint from these). The last two columns give the scale of the "
        "remaining discretisation error: 25 and 50 steps against 100 (same spacing). `rms`: of the 50-step samples.",
        "",
        f"| run | sampler | rms | {args.steps} steps vs 50 | {args.steps} tuned vs 50 | 25 vs 100 | 50 vs 100 |",
        "|---|---|---|---|---|---|---|",
        *distances,
        "",
        "Tuned schedules (tune-steps' own before/after: RMS distance to a 100-step Karras result over the same range "
        "on the calibration seeds):",
        "",
    ]
    for name, f in fits.items():
        if f.get("sigmas") is None:
            lines.append(f"- {name}: no better schedule found within the budget ({f['tune_s']:.0f} s)")
            continue
        lines.append(
            f"- {name}: {f['error_before']:.4f} -> {f['error_after']:.4f} in {f['evaluations']} runs "
            f"({f['tune_s']:.0f} s); start ({f['start']['spacing']}) "
            + ", ".join(f"{s:.3g}" for s in f["start"]["sigmas"])
            + "; tuned "
            + ", ".join(f"{s:.3g}" for s in f["sigmas"])
        )
    if evals:
        lines += [
            "",
            "## Eval metrics",
            "",
            "Each variant generates the same seeds. A Fréchet distance from fewer clips than features + 1 (41 + 1 "
            "for music) comes from a rank-deficient covariance and is mostly sampling noise (the evaluator warns); "
            "compare it between variants only for large differences, and check the paired distance above.",
            "",
            *evals,
        ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "few_steps.md").write_text(table)
    (args.out / "few_steps.json").write_text(json.dumps(fits, indent=2))
    print(f"wrote {args.out / 'few_steps.md'} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
