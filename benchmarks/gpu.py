"""CUDA checks of the training and generation paths, for a machine with one GPU (run by hand when one is lent).

What it does, each part in its own process with a time limit, so that one failure does not hide the others:

1. trains the GPU recipes ``audio_music`` and ``video_shapes`` for ``--steps`` steps in float32, bf16 autocast and
   bf16 + ``torch.compile``, and reads the training rate (samples/s) that the trainer logs, leaving out the first
   log intervals (warm-up, compilation);
2. resumes the bf16 audio run: trains half the steps, resumes to the end, and compares the final weights with the
   uninterrupted run (exact resume on CUDA, up to the GPU's non-deterministic kernels);
3. generates from the bf16 runs with 10 and 25 steps and times it;
4. times the built-in data (music synth, moving shapes) on this machine's CPU, in-process and with DataLoader
   workers, to compare with what the GPU consumes.

Usage (on the GPU machine, from the repository root)::

    python benchmarks/gpu.py --out OUT_FOLDER [--steps 200]

Writes ``gpu.md`` (a table) and ``gpu.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import TRAIN_LOG_LINE

RECIPES = ("audio_music", "video_shapes")
MODES = {
    "fp32": [],
    "bf16": ["trainer.mixed_precision=bf16"],
    "bf16+compile": ["trainer.mixed_precision=bf16", "trainer.compile=true"],
}


def _run(cmd: list[str], timeout: float, log: Path) -> tuple[int, float]:
    """Run ``cmd`` with its output in ``log``; ``(return code, seconds)``, return code 124 on a timeout."""
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - start


def _train(recipe: str, run_dir: Path, steps: int, extra: list[str], timeout: float, log: Path) -> dict:
    cmd = [sys.executable, "-m", "mmdiff", "train", f"recipe={recipe}", f"run_dir={run_dir}",
           f"trainer.max_steps={steps}", f"trainer.log_every={max(steps // 8, 1)}", "trainer.progress=false",
           "trainer.sample_every=0", f"trainer.checkpoint_every={steps}", *extra]  # fmt: skip
    code, seconds = _run(cmd, timeout, log)
    lines = TRAIN_LOG_LINE.findall(log.read_text(errors="replace"))
    rates = [float(r) for _, _, r in lines]
    steady = rates[2:] or rates[-1:]  # the first intervals hold cuDNN autotuning and compilation
    return {
        "returncode": code,
        "wall_s": round(seconds, 1),
        "samples_per_s": round(sum(steady) / len(steady), 1) if steady else None,
        "final_loss": lines[-1][1] if lines else None,
        "tail": log.read_text(errors="replace")[-600:] if code else "",
    }


def _compare_weights(a: Path, b: Path) -> dict:
    from safetensors.torch import load_file

    def last(run: Path) -> Path:
        return sorted((run / "checkpoints").glob("step_*"))[-1]

    out = {}
    for name in ("model.safetensors", "ema.safetensors"):  # state.safetensors holds RNG states
        x, y = load_file(last(a) / name), load_file(last(b) / name)
        diff = max((x[k].float() - y[k].float()).abs().max().item() for k in x)
        scale = max(x[k].float().abs().max().item() for k in x)
        out[name] = {"max_abs_diff": diff, "max_abs_weight": scale}
    return out


def _generate(run_dir: Path, steps: int, n: int) -> dict:
    import torch

    import mmdiff

    pipe = mmdiff.load(run_dir)
    pipe.generate(2, steps=steps, seed=0, progress=False)  # warm-up
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    start = time.perf_counter()
    pipe.generate(n, steps=steps, seed=1, progress=False)
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return {"steps": steps, "clips": n, "seconds": round(time.perf_counter() - start, 3)}


def _data_rates(n: int, recipes: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from mmdiff.configs import config_dirs, recipe_dirs, register_recipes

    register_recipes(recipe_dirs())
    out = {}
    for recipe in recipes:
        with initialize_config_dir(str(config_dirs()[0]), version_base="1.3"):
            dataset = instantiate(compose("config", overrides=[f"recipe={recipe}"]).data)
        keys = [(i % len(dataset), i) for i in range(n)]
        start = time.perf_counter()
        for key in keys:
            dataset[key]
        out[f"{recipe} in-process"] = round(n / (time.perf_counter() - start), 1)
        for workers in (4, 8):
            loader = DataLoader(_Keyed(dataset), batch_size=32, sampler=keys, num_workers=workers)
            batches = iter(loader)
            next(batches)  # workers started
            start = time.perf_counter()
            count = sum(len(b["seed"]) for b in batches)
            out[f"{recipe} {workers} workers"] = round(count / (time.perf_counter() - start), 1)
    return out


class _Keyed:
    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, key):
        return {**self.dataset[key], "seed": key[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=240, help="seconds per training run")
    parser.add_argument("--only", choices=("train", "resume", "generate", "data"), nargs="*")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), help="recipes to train (first: resume)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = Path(os.environ.get("TMPDIR", "/tmp")) / "mmdiff_gpu_runs"
    parts = set(args.only or ("train", "resume", "generate", "data"))
    report: dict = {}
    import torch

    report["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    report["torch"] = torch.__version__
    print(json.dumps(report), flush=True)

    def save() -> None:  # after every part, so that a run cut short by its time limit still reports
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2))

    if "train" in parts:
        for recipe in args.recipes:
            for mode, extra in MODES.items():
                key = f"{recipe} {mode}"
                report[key] = _train(
                    recipe,
                    runs / recipe / mode,
                    args.steps,
                    extra,
                    240,
                    args.out / f"{recipe}_{mode}.log".replace("+", "_"),
                )
                print(key, json.dumps(report[key]), flush=True)
                save()
    if "generate" in parts:
        for recipe in args.recipes:
            run = runs / recipe / "bf16"
            try:
                report[f"{recipe} generate"] = [_generate(run, s, 8) for s in (10, 25)]
            except Exception as error:
                report[f"{recipe} generate"] = repr(error)
            print(recipe, "generate", json.dumps(report[f"{recipe} generate"]), flush=True)
            save()
    if "resume" in parts:
        whole, parted = runs / "resume_whole", runs / "resume_parted"
        steps, extra = args.steps // 2 * 2, MODES["bf16"]
        report["resume whole"] = _train(
            args.recipes[0], whole, steps, extra, args.timeout, args.out / "resume_whole.log"
        )
        half = [*extra, f"trainer.checkpoint_every={steps // 2}"]
        report["resume first half"] = _train(
            args.recipes[0], parted, steps // 2, half, args.timeout, args.out / "resume_a.log"
        )
        report["resume second half"] = _train(
            args.recipes[0], parted, steps, [*half, "trainer.resume=auto"], args.timeout, args.out / "resume_b.log"
        )
        try:
            report["resume weights"] = _compare_weights(whole, parted)
        except Exception as error:  # a report, not a test
            report["resume weights"] = repr(error)
        print("resume", json.dumps(report["resume weights"]), flush=True)
        save()
    if "data" in parts:
        try:
            report["data items/s"] = _data_rates(512, args.recipes)
        except Exception as error:
            report["data items/s"] = repr(error)
        print("data", json.dumps(report["data items/s"]), flush=True)
    save()


if __name__ == "__main__":
    main()
