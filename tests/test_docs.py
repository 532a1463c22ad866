"""Every ```python block in the README and docs/ runs, so the docs cannot drift from the code.

Blocks run in a fresh folder that holds ``runs/points_ring``: a tiny trained run of the recipe the README trains.
"""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks():
    for path in DOCS:
        for i, code in enumerate(BLOCK.findall(path.read_text())):
            yield pytest.param(code, id=f"{path.relative_to(ROOT)}#{i}")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from mmdiff.core import DiffusionLoss, vp_cosine
    from mmdiff.modalities.points import MixturePoints, PointsAdapter, PointsMLP
    from mmdiff.train import Trainer

    run_dir = tmp_path_factory.mktemp("runs") / "points_ring"
    Trainer(
        adapter=PointsAdapter(2, 8),
        net=PointsMLP(2, 32, 1, 8),
        dataset=MixturePoints(256),
        objective=DiffusionLoss(vp_cosine(), "v"),
        optimizer=lambda p: torch.optim.AdamW(p, 1e-3),
        run_dir=run_dir,
        config_yaml=(ROOT / "tests" / "data" / "points_config.yaml").read_text(),
        max_steps=2,
        batch_size=8,
        sample_every=0,
        device="cpu",
        progress=False,
    ).fit()
    return run_dir


@pytest.mark.parametrize("code", list(_blocks()))
def test_doc_block_runs(code, tmp_path, monkeypatch, trained_run):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "points_ring").symlink_to(trained_run)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc_example__"})
