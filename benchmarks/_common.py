"""Helpers shared by the speed benchmarks: timing with medians, a matmul reference, and FLOP counting for the CPU
attention kernel, which torch's FlopCounterMode does not know."""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

MATMUL_N = 1024  # the float32 matmul whose FLOP/s is the machine's practical peak


# ---- FLOP counting: the CPU attention kernel is missing from FlopCounterMode's registry ---------------------------
def _sdpa_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """Forward: ``q @ k^T`` and ``p @ v`` (shapes ``(B, H, N, D)``)."""
    b, h, sq, d = q
    sk, dv = k[-2], v[-1]
    return 2 * b * h * sq * sk * (d + dv)


def _sdpa_backward_flops(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
    """Backward: recompute the scores, then grad of scores, v, q and k (five matmuls, as torch counts them)."""
    b, h, sq, d = q
    sk, dv = k[-2], v[-1]
    return 2 * b * h * sq * sk * (3 * d + 2 * dv)


SDPA_CPU_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops,
}


# ---- the trainer's log ------------------------------------------------------------------------------------------
#: A log line of ``mmdiff train trainer.progress=false``: (step, loss, samples/s).
TRAIN_LOG_LINE = re.compile(r"step (\d+)/\d+: loss ([\d.naif]+) .* ([\d.]+) samples/s")


# ---- a recipe's config ---------------------------------------------------------------------------------------------
def compose_recipe(name: str, overrides: Sequence[str] = ()) -> Any:
    """The recipe's resolved config, composed exactly as ``mmdiff train recipe=NAME OVERRIDES`` composes it."""
    from hydra import compose, initialize_config_dir

    from mmdiff.configs import config_dirs, recipe_dirs, register_recipes

    register_recipes(recipe_dirs())
    with initialize_config_dir(config_dir=str(config_dirs()[0]), version_base="1.3"):
        return compose(config_name="config", overrides=[f"recipe={name}", *overrides])


# ---- a trained run -------------------------------------------------------------------------------------------------
def seeded_sampler(run: str | Path, n: int) -> Callable[..., torch.Tensor]:
    """``generate(**options)``: ``n`` samples in ``run``'s model space (EMA weights, its conditioner's default
    request) from seeds ``0 .. n-1``, through :func:`mmdiff.core.sample` with ``options`` (sampler, steps, sigmas ...).
    The same seeds give the same starting noise whatever the options, so results can be compared pairwise."""
    import mmdiff
    from mmdiff.core import sample

    pipe = mmdiff.load(run)
    shape = (n, *pipe.adapter.sample_shape(None))
    cond = pipe.conditioner.request(n, pipe.device)
    schedule = pipe.model.schedule
    return lambda **options: sample(pipe.denoiser, shape, seed=list(range(n)), schedule=schedule, cond=cond, **options)


# ---- a benchmark's start ------------------------------------------------------------------------------------------
def bench_parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """The command line every benchmark takes: ``--out`` (folder for the report) and ``--quick`` (a smoke test)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def begin() -> tuple[float, float]:
    """Use 2 torch threads, warn when the machine is busy; return ``(1-min load average, start time)``."""
    torch.set_num_threads(2)
    load_start = os.getloadavg()[0]
    if load_start > 0.5:
        print(f"warning: load average {load_start:.1f}; timings will be unreliable on a busy machine", flush=True)
    return load_start, time.perf_counter()


# ---- measurements ---------------------------------------------------------------------------------------------------
TIMINGS: dict[str, list[float]] = {}  # every timed iteration, for the spread in the report


def timed(label: str, fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Median wall time of ``fn`` over ``iters`` calls after ``warmup`` untimed ones (all kept in ``TIMINGS``)."""
    for _ in range(warmup):
        fn()
    times = TIMINGS.setdefault(label, [])
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    print(f"  {label}: " + " ".join(f"{x:.3f}" for x in times) + " s", flush=True)
    return statistics.median(times)


def matmul_flops(s) -> float:
    """FLOP/s of a float32 ``MATMUL_N`` matmul; ``s`` gives ``matmul_repeats``, ``warmup`` and ``iters``."""
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)

    def run() -> None:
        for _ in range(s.matmul_repeats):
            a @ b

    return 2 * MATMUL_N**3 * s.matmul_repeats / timed("matmul", run, max(s.warmup, 2), max(s.iters, 3))


def write_report(path: Path, lines: list[str], wall: float) -> None:
    """Print the report ``lines`` plus the spread of every timed iteration, and write them to ``path``."""
    lines = [
        *lines,
        "",
        "Timing spread, seconds per timed iteration (min / median / max, n):",
        *(
            f"- {key}: {min(v):.3f} / {statistics.median(v):.3f} / {max(v):.3f} ({len(v)})"
            for key, v in TIMINGS.items()
        ),
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table)
    print(f"wrote {path} ({wall:.0f} s)")
