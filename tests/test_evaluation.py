"""Evaluators (``conf/evaluator/``): chosen by a recipe, built by Hydra, scoring real crops of a folder rather than
whole files, scoring music against the data's own pitch classes, and warning when n is too small for a Fréchet
distance. The pipelines here are stand-ins that "generate" real data, so no model is trained."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmdiff.configs import config_dirs, recipe_dirs, register_recipes
from mmdiff.metrics import frechet_distance
from mmdiff.modalities.audio import AudioFolder, MusicSynth, load_audio, write_audio
from mmdiff.modalities.audio.evaluate import MusicEvaluator
from mmdiff.modalities.evaluation import real_items
from mmdiff.modalities.points import MixturePoints
from mmdiff.modalities.points.evaluate import PointsEvaluator
from mmdiff.modalities.video import MovingShapes, write_mp4
from mmdiff.modalities.video.evaluate import VideoEvaluator
from mmdiff.modalities.video.folder import VideoFolder
from mmdiff.modalities.video.io import read_clip

SR = 8000
BLACK_KEYS = "f_sharp_major_pentatonic"  # no pitch class in common with C major pentatonic


class StandIn:
    """A pipeline whose ``generate`` returns items ``key`` of ``source`` (from index ``offset + seed``), recording
    the calls; ``adapter`` only has to say the sample rate here."""

    def __init__(self, source, key: str, offset: int = 0):
        self.source, self.key, self.offset, self.calls = source, key, offset, []
        self.adapter = type("Adapter", (), {"sample_rate": getattr(source, "sample_rate", None)})()

    def generate(self, n: int, seed: int = 0, progress: bool = True, **options):
        self.calls.append({"n": n, "seed": seed, "progress": progress, **options})
        return [self.source[self.offset + seed + i][self.key] for i in range(n)]


def _messages(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelname == "WARNING"]


@pytest.fixture(scope="module")
def black_key_folder(tmp_path_factory):
    """Seven 2-second melodies on the black keys: 28 non-overlapping crops of 0.5 s."""
    root = tmp_path_factory.mktemp("black_keys")
    melodies = MusicSynth(size=7, sample_rate=SR, duration=2.0, scale=BLACK_KEYS, instruments=["sine"], seed=1)
    for i in range(7):
        write_audio(root / f"tune_{i}.wav", melodies[i]["audio"], SR)
    return root


def test_folder_crops_are_distinct_slices_of_the_files(black_key_folder):
    folder = AudioFolder(black_key_folder, sample_rate=SR, duration=0.5)
    assert len(folder) == 7 and [folder.num_crops(i) for i in range(7)] == [4] * 7
    whole = load_audio(folder.clips[2].path, SR)  # (1, 16000)
    crops = folder.crops(2, [0, 3, 9])  # 9 is past the end: the last whole crop
    for item, start in zip(crops, [0, 3 * 4000, 3 * 4000]):
        assert torch.equal(item["audio"], whole[:, start : start + 4000])
    reference, held_out = real_items(folder, 8, "test")
    assert len(reference) == len(held_out) == 8
    keys = {item["audio"].numpy().tobytes() for item in reference + held_out}
    assert len(keys) == 16  # 16 different crops, no clip in both sets
    again, _ = real_items(folder, 8, "test")
    assert all(torch.equal(a["audio"], b["audio"]) for a, b in zip(reference, again))  # the same crops every time


def test_music_on_a_folder_counts_crops_and_uses_the_datas_pitch_classes(black_key_folder, caplog):
    folder = AudioFolder(black_key_folder, sample_rate=SR, duration=0.5)
    evaluator = MusicEvaluator(vocoder_row=False)
    same_scale = MusicSynth(size=40, sample_rate=SR, duration=0.5, scale=BLACK_KEYS, seed=5)
    pipe = StandIn(same_scale, "audio")
    report = evaluator(pipe, folder, n=8, seed=3, steps=2)  # n=8 on 7 files: 16 of their 28 crops
    assert pipe.calls == [{"n": 8, "seed": 3, "progress": False, "steps": 2}]
    assert list(report) == ["generated", "real, held out"]
    assert all(set(row) == {"voiced_share", "pitch_class_distance", "frechet_distance"} for row in report.values())
    # 8 half-second crops play a few notes each, so even real clips differ (measured: 0.27 held out, 0.31 generated)
    assert report["real, held out"]["pitch_class_distance"] < 0.45
    assert report["generated"]["pitch_class_distance"] < 0.45  # the same five pitch classes
    assert any(
        "states no scale" in line and "on_scale_share is left out" in line for line in _messages(caplog, "mmdiff.eval")
    )
    off_scale = MusicSynth(size=40, sample_rate=SR, duration=0.5, scale="c_major_pentatonic", seed=5)
    wrong = evaluator(StandIn(off_scale, "audio"), folder, n=8)
    assert wrong["generated"]["pitch_class_distance"] > 0.8  # melodies in another key are told apart (measured 0.91)
    message = "n=15 needs 2 x n = 30 real clips (15 to score against, 15 held out); the data has 28 (7 files cut into "
    with pytest.raises(ValueError, match=re.escape(message + "non-overlapping crops): use n=14 or less")):
        evaluator(pipe, folder, n=15)


def test_music_on_the_synth_scores_its_configured_scale():
    data = MusicSynth(size=8, sample_rate=SR, duration=0.5, scale=BLACK_KEYS, seed=2)
    report = MusicEvaluator(vocoder_row=False)(StandIn(data, "audio", offset=4), data, n=4)
    assert all(set(row) == {"voiced_share", "on_scale_share", "frechet_distance"} for row in report.values())
    assert report["real, held out"]["on_scale_share"] > 0.8  # C major pentatonic would score about 0
    assert (
        MusicEvaluator(scale="c_major_pentatonic", vocoder_row=False)(StandIn(data, "audio"), data, n=2)["generated"][
            "on_scale_share"
        ]
        < 0.2
    )


def test_frechet_distance_warns_when_n_is_not_above_the_feature_count(caplog):
    rng = np.random.default_rng(0)
    frechet_distance(rng.normal(size=(3, 5)), rng.normal(size=(10, 5)))
    (line,) = _messages(caplog, "mmdiff.metrics")
    assert "n=3 samples of 5 features" in line and "needs more than 5 samples to be full rank" in line
    caplog.clear()
    frechet_distance(rng.normal(size=(6, 5)), rng.normal(size=(6, 5)))
    frechet_distance(rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), warn=False)
    assert _messages(caplog, "mmdiff.metrics") == []


def test_video_evaluator_warns_once_and_a_video_folder_gives_crops(tmp_path, caplog):
    shapes = MovingShapes(size=12, num_frames=16, resolution=(16, 16), seed=0)
    for i in range(2):  # two 2-second videos: 4 clips of 4 frames at 8 fps each
        write_mp4(tmp_path / f"v{i}.mp4", shapes[i]["video"], fps=8.0)
    folder = VideoFolder(tmp_path, num_frames=4, fps=8.0, size=(16, 16))
    assert [folder.num_crops(i) for i in range(2)] == [4, 4]
    clip = folder.crops(1, [2])[0]["video"]
    assert torch.equal(clip, read_clip(folder.videos[1].path, 4, 8.0, (16, 16), start=1.0, short_policy="loop"))
    generated = MovingShapes(size=12, num_frames=4, resolution=(16, 16), seed=1)
    pipe = StandIn(generated, "video")
    report = VideoEvaluator()(pipe, folder, n=4)  # 4 + 4 crops from 2 files
    assert pipe.calls[0]["length"] == 4 and list(report) == ["generated", "real, held out"]
    assert {"frechet_distance", "temporal_change_ratio"} <= set(report["generated"])
    lines = _messages(caplog, "mmdiff.eval")
    assert len(lines) == 1 and "VideoEvaluator" in lines[0] and "n=4 samples of 17 features" in lines[0]
    assert _messages(caplog, "mmdiff.metrics") == []  # one warning per evaluation, not one per row


def test_points_evaluator_and_n_checks():
    data = MixturePoints(size=64, seed=0)
    report = PointsEvaluator(n=16)(StandIn(MixturePoints(size=64, seed=1), "x"), data)
    assert set(report) == {"generated", "real, held out"} and report["generated"]["sliced_w1"] < 1.0
    for n in (1, 2.5, True):
        with pytest.raises(ValueError, match=f"PointsEvaluator: n must be a whole number >= 2.*got {n!r}"):
            PointsEvaluator()(None, data, n=n)
    with pytest.raises(ValueError, match=r"n=40 needs 2 x n = 80 real points.*the data has 64: use n=32 or less"):
        PointsEvaluator()(None, data, n=40)


@pytest.mark.parametrize(
    ("recipe", "evaluator"),
    [
        ("points_ring", PointsEvaluator),
        ("audio_music", MusicEvaluator),
        ("audio_music_cpu", MusicEvaluator),
        ("video_shapes", VideoEvaluator),
        ("video_shapes_cpu", VideoEvaluator),
    ],
)
def test_each_recipe_picks_an_evaluator_that_hydra_builds(recipe, evaluator):
    register_recipes(recipe_dirs())
    with initialize_config_dir(str(config_dirs()[0]), version_base="1.3"):
        cfg = compose("config", overrides=[f"recipe={recipe}"])
        bare = compose("config")
    built = instantiate(cfg.evaluator)
    assert type(built) is evaluator and built.n == (4096 if evaluator is PointsEvaluator else 64)
    assert "evaluator" not in bare  # no recipe, no evaluator: `mmdiff eval` has nothing to score with
    assert OmegaConf.to_container(cfg.evaluator)["_target_"].endswith(evaluator.__name__)
