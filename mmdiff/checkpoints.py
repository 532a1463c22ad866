"""Checkpoints: safetensors weights plus the resumable state, written atomically, last K kept.

Layout of ``<run_dir>/checkpoints/step_000500/``:

* ``model.safetensors``: the raw weights; ``ema.safetensors``: the EMA weights (what generation loads);
* ``state.pt``: optimizer, LR scheduler, EMA, step and RNG states, for resuming;
* ``config.yaml``: the resolved config, so a checkpoint folder alone can be loaded.

A checkpoint is written into a hidden temporary folder and renamed into place, so a crash while saving never leaves
a half-written ``step_*`` folder: the last complete checkpoint stays the latest.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}  # noqa: NPY002
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    state: dict[str, Any],
    config_yaml: str,
    keep: int = 3,
) -> Path:
    """Write checkpoint ``step`` atomically and delete all but the newest ``keep``. Returns its folder."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_contiguous(model), tmp / "model.safetensors", metadata={"step": str(step)})
    save_file(_contiguous(ema), tmp / "ema.safetensors", metadata={"step": str(step)})
    torch.save({**state, "step": step}, tmp / "state.pt")
    (tmp / "config.yaml").write_text(config_yaml)
    for f in tmp.iterdir():  # make the data durable before the rename publishes it
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_weights(checkpoint: str | Path, ema: bool = True) -> dict[str, torch.Tensor]:
    """The EMA (default) or raw weights of a checkpoint folder or of a ``.safetensors`` file."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / ("ema.safetensors" if ema else "model.safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    return load_file(path)


def load_state(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / "state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a resumable checkpoint: {path.name} is missing")
    return torch.load(path, map_location="cpu", weights_only=False)
