"""The "Adding a modality" tutorial's image modality (examples/image_modality/), outside mmdiff and without editing it:
it trains a few steps from the CLI with its own config groups and recipe, then loads and generates."""

import os
import subprocess
import sys
from pathlib import Path

import torch

import mmdiff

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "image_modality"


def test_the_tutorial_modality_trains_and_generates(tmp_path, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE), "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "mmdiff",
        "train",
        "--recipes",
        str(EXAMPLE / "recipes"),
        "recipe=images_shapes",
        f"hydra.searchpath=[file://{EXAMPLE / 'conf'}]",
        f"run_dir={tmp_path / 'run'}",
        "trainer.max_steps=3",
        "trainer.progress=false",
        "generate.num_samples=2",
        "generate.steps=3",
    ]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((tmp_path / "run" / "samples" / "step_000003").glob("sample_*.png"))) == 2
    monkeypatch.syspath_prepend(str(EXAMPLE))
    pipe = mmdiff.load(tmp_path / "run", device="cpu")
    images = pipe.generate(3, steps=4, label=[0, 1, 1], progress=False)
    assert [tuple(i.shape) for i in images] == [(3, 16, 16)] * 3 and 0 <= float(torch.stack(images).min())
    assert [p.suffix for p in pipe.save(images, tmp_path / "out")] == [".png"] * 3
