import sys
from pathlib import Path

import pytest

from mmdiff.core import EDMSchedule, FlowSchedule, vp_cosine, vp_linear

SCHEDULES = {
    "vp_linear": vp_linear,
    "vp_cosine": vp_cosine,
    "edm": lambda: EDMSchedule(sigma_data=1.0),
    "flow": FlowSchedule,
}


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    """Folder scans and prepared stores go to a temporary cache, never the user's ~/.cache/mmdiff; subprocesses
    (CLI tests) inherit it through the environment."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MMDIFF_CACHE", str(tmp_path_factory.mktemp("mmdiff_cache")))
    yield
    patch.undo()


@pytest.fixture(params=sorted(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]()


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "image_modality"  # the "Adding a modality" package


@pytest.fixture(scope="session")
def doc_runs(tmp_path_factory):
    """Tiny stand-ins for the runs the docs train: ``points_ring``, ``music``, ``music_text``, ``shapes``, ``av``
    and ``images`` (the
    tutorial's modality, whose package is put on ``sys.path`` as its page says), in one folder."""
    from _helpers import train_tiny_run

    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    root = tmp_path_factory.mktemp("runs")
    train_tiny_run(root / "points_ring", "points_config.yaml", steps=2, batch_size=8)
    train_tiny_run(root / "music", "audio_config.yaml", steps=2)
    train_tiny_run(root / "music_text", "audio_text_config.yaml", steps=2)
    train_tiny_run(root / "shapes", "video_config.yaml", steps=2)
    train_tiny_run(root / "images", "images_config.yaml", steps=2)
    train_tiny_run(root / "av", "av_config.yaml", steps=2)
    return root
