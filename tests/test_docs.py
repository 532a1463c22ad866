"""Every ```python block in the README and docs/ runs, so the docs cannot drift from the code.

Blocks run in a fresh folder that holds ``runs/``: tiny trained stand-ins for the runs the docs train.
"""

import re
import sys
from pathlib import Path

import pytest
from _helpers import train_tiny_run

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
SNIPPET = re.compile(r'^--8<-- "(.+)"$', re.M)  # pymdownx.snippets: the block shows a file of the repository
EXAMPLE = ROOT / "examples" / "image_modality"  # the "Adding a modality" tutorial's package


def _expand(code: str) -> str:
    return SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(), code)


def _blocks():
    for path in DOCS:
        for i, code in enumerate(BLOCK.findall(path.read_text())):
            yield pytest.param(_expand(code), id=f"{path.relative_to(ROOT)}#{i}")


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Tiny stand-ins for the runs the docs train: ``runs/points_ring``, ``runs/music``, ``runs/shapes`` and
    ``runs/images`` (the tutorial's modality, whose package is put on ``sys.path`` as its page says)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    root = tmp_path_factory.mktemp("runs")
    train_tiny_run(root / "points_ring", "points_config.yaml", steps=2, batch_size=8)
    train_tiny_run(root / "music", "audio_config.yaml", steps=2)
    train_tiny_run(root / "shapes", "video_config.yaml", steps=2)
    train_tiny_run(root / "images", "images_config.yaml", steps=2)
    return root


@pytest.mark.parametrize("code", list(_blocks()))
def test_doc_block_runs(code, tmp_path, monkeypatch, trained_runs):
    (tmp_path / "runs").symlink_to(trained_runs)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc_example__"})
