"""Shared helpers for the tests."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from mmdiff.core import GaussianMixture

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module ``bench_<name>`` (registered in ``sys.modules``, where
    dataclasses look their module up). The scripts import their sibling ``_common``, so the folder is on
    ``sys.path`` while it loads."""
    key = f"bench_{name}"
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(key, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def mixture_for(shape, components: int = 3, seed: int = 0) -> GaussianMixture:
    """A random isotropic mixture whose samples have the per-sample shape ``shape[1:]``."""
    g = torch.Generator().manual_seed(seed)
    dim = math.prod(shape[1:])
    return GaussianMixture(torch.randn(components, dim, generator=g), torch.rand(components, generator=g) * 0.5 + 0.2)


DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]  # every page whose code blocks must run


def train_tiny_run(run_dir: Path, config_name: str, steps: int = 3, batch_size: int = 4) -> Path:
    """Train the tiny run described by ``tests/data/<config_name>`` for ``steps`` steps on the CPU; return its dir."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mmdiff.components import build_model, build_network
    from mmdiff.core import DiffusionLoss
    from mmdiff.train import Trainer

    text = (DATA / config_name).read_text()
    cfg = OmegaConf.create(text)
    torch.manual_seed(0)
    conditioner = instantiate(cfg.conditioner)
    Trainer(
        adapter=instantiate(cfg.adapter),
        conditioner=conditioner,
        net=build_network(cfg, conditioner),
        dataset=instantiate(cfg.data),
        objective=DiffusionLoss(build_model(cfg)),
        optimizer=lambda p: torch.optim.AdamW(p, 1e-3),
        run_dir=run_dir,
        config_yaml=text,
        max_steps=steps,
        batch_size=batch_size,
        sample_every=0,
        device="cpu",
        progress=False,
        generate={"num_samples": 2, "steps": 3},
    ).fit()
    return run_dir


def cli(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m mmdiff ARGS`` in ``cwd`` on one thread; a failure (with ``check``) shows its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mmdiff", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mmdiff {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
