"""Train variants of recipes, each for a number of steps or a wall-time budget, and score each with ``mmdiff eval``.

Each variant is ``mmdiff train recipe=RECIPE OVERRIDES`` for ``--steps`` steps, stopped with SIGTERM at
``--train-timeout`` seconds (the trainer then saves a checkpoint, so a variant is scored at the step it reached:
``--steps`` large and ``--train-timeout`` the budget trains for a fixed time), then ``mmdiff eval run=RUN n=N``.
Two uses:

* a screen of settings, ``--lanes`` variants at a time in their own processes (on a GPU machine with many cores,
  several small CPU presets at once; wall times and rates are then shared-machine figures);
* the same CPU budget for different recipes, one lane (``--lanes 1``), e.g. pixel against latent diffusion at the
  same output size.

Usage::

    python benchmarks/variants.py --out OUT --steps 1000 --n 64 --lanes 4 \\
        --variant base= --variant batch16="trainer.batch_size=16"
    python benchmarks/variants.py --out OUT --steps 100000 --train-timeout 810 --n 32 --metrics video \\
        --variant latent="recipe=video_shapes_latent_cpu autoencoder.path=runs/vae" \\
        --variant pixel="recipe=video_shapes_cpu data.num_frames=16 data.resolution=[64,64]"

A variant is ``NAME=OVERRIDES`` (space-separated Hydra overrides, empty for ``--recipe`` as it is; a
``recipe=NAME`` among them replaces ``--recipe``). ``--metrics`` picks the eval figures of the table (``av``, ``video``
or ``audio``). Writes ``variants.md`` and ``variants.json`` into ``--out``, with each run's logs beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import TRAIN_LOG_LINE

STOPPED = re.compile(r"stopped after step (\d+) and saved")  # the trainer's line on SIGTERM
AV_COLUMNS = {  # table column -> (row of the eval report, metric)
    "generated sync": ("generated", "sync_vs_chance"),
    "generated sync, own chance": ("generated", "sync_vs_own_chance"),
    "video-to-audio": ("video-to-audio", "sync_vs_chance"),
    "audio-to-video": ("audio-to-video", "sync_vs_chance"),
    "onsets/clip": ("generated", "onsets_per_clip"),
    "bounces/clip": ("generated", "bounces_per_clip"),
    "temporal change": ("generated", "temporal_change_ratio"),
    "video FD": ("generated", "video_frechet_distance"),
    "audio FD": ("generated", "audio_frechet_distance"),
    "audio_needs_given_video": ("generated", "audio_needs_given_video"),
    "real sync": ("real", "sync_vs_chance"),
}
VIDEO_COLUMNS = {
    "temporal change ratio": ("generated", "temporal_change_ratio"),
    "Fréchet distance": ("generated", "frechet_distance"),
    "real: Fréchet distance": ("real, held out", "frechet_distance"),
}
AUDIO_COLUMNS = {
    "voiced share": ("generated", "voiced_share"),
    "on-scale share": ("generated", "on_scale_share"),
    "real: voiced share": ("real, held out", "voiced_share"),
}
METRICS = {"av": AV_COLUMNS, "video": VIDEO_COLUMNS, "audio": AUDIO_COLUMNS}


def _run(cmd: list[str], timeout: float, log: Path, signal_name: str = "TERM") -> tuple[int, float]:
    """``cmd`` under ``timeout -s SIGNAL`` with its output in ``log``: ``(return code, seconds)``.

    Each command gets a numba cache folder of its own: librosa's pyin compiles with ``cache=True`` into its package
    folder. On the GPU machine four of six evaluations run at once died of SIGSEGV with nothing logged after
    loading the checkpoint; several processes writing that one cache at once is the likely cause, not established.
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(log.with_suffix(".numba"))}
    start = time.perf_counter()
    with open(log, "w") as f:
        command = ["timeout", "--foreground", "-s", signal_name, "-k", "30", str(int(timeout)), *cmd]
        code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    return code, time.perf_counter() - start


def run_variant(name: str, overrides: list[str], args: argparse.Namespace) -> dict:
    """Train one variant, then score its last checkpoint; the figures, the step reached and the wall times."""
    run_dir, train_log, eval_log = (
        args.out / "runs" / name,
        args.out / f"{name}_train.log",
        args.out / f"{name}_eval.log",
    )
    recipe = next((o.split("=", 1)[1] for o in overrides if o.startswith("recipe=")), args.recipe)
    overrides = [o for o in overrides if not o.startswith("recipe=")]
    train = [sys.executable, "-m", "mmdiff", "train", f"recipe={recipe}", f"run_dir={run_dir}",
             f"trainer.max_steps={args.steps}", f"trainer.checkpoint_every={args.steps}", "trainer.sample_every=0",
             f"trainer.log_every={max(min(args.steps // 10, 100), 1)}", "trainer.progress=false", f"trainer.seed={args.seed}",
             *args.common, *overrides]  # fmt: skip
    train_code, train_s = _run(train, args.train_timeout, train_log)
    text = train_log.read_text(errors="replace")
    steps, stopped = TRAIN_LOG_LINE.findall(text), STOPPED.findall(text)
    result = {
        "recipe": recipe,
        "overrides": " ".join(overrides),
        "train_returncode": train_code,
        "train_s": round(train_s, 1),
        "steps": int(stopped[-1]) if stopped else int(steps[-1][0]) if steps else 0,
        "final_loss": float(steps[-1][1]) if steps else None,
        "samples_per_s": float(steps[-1][2]) if steps else None,
    }
    if not (run_dir / "checkpoints").is_dir():
        return {
            **result,
            "error": f"mmdiff train: exit code {train_code}\n" + text[-800:],
        }
    report_path = args.out / f"{name}_eval.json"
    evaluate = [sys.executable, "-m", "mmdiff", "eval", f"run={run_dir}", f"n={args.n}", f"out={report_path}",
                "progress=false", *args.eval_args]  # fmt: skip
    eval_code, eval_s = _run(evaluate, args.eval_timeout, eval_log, "KILL")
    result.update(eval_returncode=eval_code, eval_s=round(eval_s, 1))
    if report_path.exists():
        report = json.loads(report_path.read_text())
        result["figures"] = {key: report.get(row, {}).get(metric) for key, (row, metric) in args.columns.items()}
    else:
        result["error"] = f"mmdiff eval: exit code {eval_code}\n" + eval_log.read_text(errors="replace")[-800:]
    return result


def markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    head = ["variant", "recipe and overrides", "steps", "train s", "clips/s", *args.columns]
    lines = ["# Variants (benchmarks/variants.py)", "",
             f"`{' '.join(sys.argv)}`; `mmdiff eval` at n = {args.n}; seed {args.seed}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for name, r in results.items():
        figures = r.get("figures") or {}
        cells = [f"{figures[k]:.2f}" if isinstance(figures.get(k), float) else "-" for k in args.columns]
        lines.append(
            f"| {name} | `{r['recipe']} {r['overrides']}` | {r['steps']} | {r['train_s']} | {r['samples_per_s']} | "
            + " | ".join(cells)
            + " |"
        )
    failed = {n: r["error"] for n, r in results.items() if "error" in r}
    for name, tail in failed.items():
        lines += ["", f"{name} failed:", "```", tail.strip(), "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", default="av_shapes_cpu")
    parser.add_argument("--variant", action="append", required=True, help="NAME=OVERRIDES (space-separated)")
    parser.add_argument("--common", nargs="*", default=[], help="overrides for every variant's training")
    parser.add_argument("--eval-args", nargs="*", default=[], help="key=value for every mmdiff eval")
    parser.add_argument("--metrics", choices=sorted(METRICS), default="av", help="which eval figures to tabulate")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--train-timeout", type=float, default=3600)
    parser.add_argument("--eval-timeout", type=float, default=1800)
    args = parser.parse_args()
    args.columns = METRICS[args.metrics]
    args.out.mkdir(parents=True, exist_ok=True)
    variants = {}
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise SystemExit(f"--variant {spec!r}: expected NAME=OVERRIDES with NAME in letters, digits, '.', '_', '-'")
        variants[name] = overrides.split()
    with ThreadPoolExecutor(args.lanes) as pool:
        futures = {name: pool.submit(run_variant, name, ov, args) for name, ov in variants.items()}
        results = {name: f.result() for name, f in futures.items()}
    (args.out / "variants.json").write_text(json.dumps(results, indent=2))
    report = markdown(results, args)
    (args.out / "variants.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
