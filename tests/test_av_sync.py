"""The audio-video sync metric (mmdiff.modalities.av.sync) and its evaluator: onsets of hand-made knocks, bounces of
the built-in moving shapes against their closed-form bounce times, the scores' definitions (empty sets included),
and AVSyncEvaluator's rows with fake pipelines that return real clips in sync or shuffled, or noise (per-track
quality)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmdiff.modalities.av import SoundingShapes
from mmdiff.modalities.av.evaluate import CHANCE_ROW, AVSyncEvaluator
from mmdiff.modalities.av.sync import (
    audio_onsets,
    chance_scores,
    object_speeds,
    scores_with_own_chance,
    sync_report,
    sync_scores,
    velocity_reversals,
    video_bounces,
)
from mmdiff.modalities.video.metrics import OBJECT_STABILITY_KEYS

SR, FPS = 16000, 8.0
CONF = Path(__file__).resolve().parents[1] / "conf" / "evaluator" / "av_sync.yaml"


def knocks(times, seconds=2.0, amplitude=0.5, pitch=440.0, channels=1, sample_rate=SR):
    """A waveform (channels, S) with a decaying tone starting at each of ``times`` (seconds)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    y = np.zeros_like(t)
    for onset in times:
        tau = t - onset
        y += np.where(tau >= 0, amplitude * np.exp(-np.clip(tau, 0, None) / 0.1) * np.sin(2 * np.pi * pitch * tau), 0)
    return torch.from_numpy(np.tile(y, (channels, 1))).float()


@pytest.fixture(scope="module")
def data():
    return SoundingShapes(size=24)


def test_onsets_of_hand_made_knocks_mono_and_stereo():
    times = [0.3, 0.9, 1.05, 1.6]
    for channels in (1, 2):
        found = audio_onsets(knocks(times, channels=channels), SR)
        assert len(found) == len(times)
        np.testing.assert_allclose(found, times, atol=0.01)  # within 10 ms, far inside one 125 ms frame
    # a (S,) waveform and a numpy array work as well; a quiet knock (-34 dBFS) is still found, one at -46 dBFS is not
    np.testing.assert_allclose(audio_onsets(knocks([0.5], amplitude=0.02)[0].numpy(), SR), [0.5], atol=0.01)
    assert audio_onsets(knocks([0.5], amplitude=0.005), SR).size == 0


def test_silence_and_quiet_hiss_have_no_onsets():
    assert audio_onsets(torch.zeros(1, 2 * SR), SR).size == 0
    hiss = 0.003 * torch.randn(1, 2 * SR, generator=torch.Generator().manual_seed(0))  # about -50 dBFS
    assert audio_onsets(hiss, SR).size == 0
    # a clip that ends while a knock still rings is no onset at the cut
    np.testing.assert_allclose(audio_onsets(knocks([1.9]), SR), [1.9], atol=0.01)


def test_bad_media_are_one_line_errors():
    with pytest.raises(ValueError, match="waveform"):
        audio_onsets(torch.zeros(1, 2, 10), SR)
    with pytest.raises(ValueError, match="NaN"):
        audio_onsets(torch.full((1, 100), float("nan")), SR)
    with pytest.raises(ValueError, match=r"\(C, F, H, W\)"):
        video_bounces(torch.zeros(3, 16, 16), FPS)


def test_video_bounces_match_the_synth(data):
    """On the built-in data the bounces seen in the frames are the closed-form ones (those before the last frame)."""
    found = seen = matched = correct = 0
    for i in range(len(data)):
        truth = np.array([b["time"] for b in data.bounces(i) if b["frame"] < data.num_frames - 1])
        detected = video_bounces(data[i]["video"], FPS)
        found, seen = found + len(detected), seen + len(truth)
        if len(truth) and len(detected):
            distance = np.abs(detected[:, None] - truth[None])  # (detected, truth) seconds
            correct += int((distance.min(axis=1) <= 0.25 / FPS).sum())  # within a quarter frame
            matched += int((distance.min(axis=0) <= 1 / FPS).sum())
    assert seen >= 15 and correct / found >= 0.9 and matched / seen >= 0.85, (found, seen, correct, matched)


def test_object_speeds_match_the_synth(data):
    """The tracked moves of one-object clips are the synth's speed (a bounce shortens the move of its frame only)."""
    for i in range(len(data)):
        objects = data.moving_shapes.trajectories(i)
        if len(objects) != 1:
            continue
        true_speed = float(np.hypot(*objects[0]["velocity"]))  # px per frame, constant but for reflections
        moves = object_speeds(data[i]["video"])
        assert len(moves) >= data.num_frames - 3 and abs(np.median(moves) - true_speed) < 0.1 * true_speed + 0.05
    still = data[0]["video"][:, :1].expand_as(data[0]["video"])
    assert np.all(object_speeds(still) < 1e-6) and object_speeds(torch.zeros_like(still)).size == 0


def test_still_or_empty_video_has_no_bounces(data):
    video = data[0]["video"]
    assert video_bounces(video[:, :1].expand_as(video), FPS).size == 0  # a frozen clip
    assert video_bounces(torch.zeros_like(video), FPS).size == 0  # no bright object
    noisy = (0.1 + 0.05 * torch.randn(video.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert video_bounces(noisy, FPS).size == 0  # dark noise is background


def test_velocity_reversals_skip_the_dead_band():
    v = np.array([1.0, 0.9, 0.05, -0.02, -1.0, -1.1, 0.0, 1.2, 0.5])
    assert velocity_reversals(v, 0.1) == [(1, 4), (5, 7)]  # signs across the dead-band steps 2, 3 and 6
    assert velocity_reversals(v, 2.0) == []  # all inside the band: no sign, no reversal
    assert velocity_reversals(np.array([0.5, -0.5]), 0.0) == [(0, 1)]


def test_sync_scores_definitions():
    onsets = [np.array([0.5, 1.0, 1.8]), np.array([0.2])]
    bounces = [np.array([0.45, 1.5]), np.array([])]
    scores = sync_scores(onsets, bounces, tolerance=0.125)
    assert scores["onsets_near_bounce"] == pytest.approx(1 / 4)  # only 0.5 lies within 0.125 s of a bounce
    assert scores["bounces_with_onset"] == pytest.approx(1 / 2)  # 0.45 has one, 1.5 has none
    assert (scores["onsets"], scores["bounces"], scores["clips"]) == (4, 2, 2)
    assert scores["onsets_per_clip"] == 2 and scores["bounces_per_clip"] == 1
    assert sync_scores(onsets, bounces, tolerance=0.3)["bounces_with_onset"] == 1.0  # 1.5 -> 1.8 is 0.3: inclusive
    empty = sync_scores([np.array([])], [np.array([])], tolerance=0.125)
    assert empty["onsets_near_bounce"] == 0 and empty["bounces_with_onset"] == 0 and empty["onsets"] == 0
    assert not any(np.isnan(v) for v in empty.values())
    assert sync_scores([], [], 0.1)["onsets_per_clip"] == 0
    with pytest.raises(ValueError, match="one per clip"):
        sync_scores([np.array([1.0])], [], 0.1)


def test_chance_pools_every_shift():
    onsets = [np.array([1.0]), np.array([0.5]), np.array([])]
    bounces = [np.array([0.5]), np.array([1.0]), np.array([0.52])]
    chance = chance_scores(onsets, bounces, tolerance=0.125)
    # shift 1: clip 0 gets [0.5] (hit), 1 gets [] , 2 gets [1.0] (miss); shift 2: 0 gets [], 1 gets [1.0] (hit),
    # 2 gets [0.5] (hit): 3 of 4 onsets near a bounce; bounces with an onset: 0 (shift 1), 1 and 2 (shift 2) of 6
    assert chance["onsets_near_bounce"] == pytest.approx(3 / 4)
    assert chance["bounces_with_onset"] == pytest.approx(3 / 6)
    assert (chance["onsets"], chance["bounces"], chance["clips"]) == (2, 3, 3)  # the counts of the clips themselves
    assert sync_scores(onsets, bounces, 0.125)["onsets_near_bounce"] == 0  # each clip with its own sound: no hit
    single = chance_scores([np.array([1.0])], [np.array([1.0])], 0.125)
    assert single["onsets_near_bounce"] == 0 and single["onsets"] == 1  # one clip has no other to pair with
    own = scores_with_own_chance(onsets, bounces, 0.125)  # these clips against their own chance: 0 of 3/4
    assert own["own_chance"] == pytest.approx(3 / 4) and own["sync_vs_own_chance"] == 0
    assert own == scores_with_own_chance(onsets, bounces, 0.125, chance)  # a chance already computed is reused
    in_sync = scores_with_own_chance([np.array([0.5]), np.array([1.0]), np.array([0.52])], bounces, 0.125)
    assert in_sync["onsets_near_bounce"] == 1 and in_sync["sync_vs_own_chance"] == pytest.approx(
        1 / in_sync["own_chance"]
    )
    assert np.isnan(scores_with_own_chance(*([np.array([1.0])],) * 2, 0.125)["sync_vs_own_chance"])  # no other clip


def test_sync_report_real_against_mismatched(data):
    items = [data[i] for i in range(12)]
    real = sync_report(items, FPS, SR)
    chance = sync_report(items, FPS, SR, pair_with=[(i + 1) % 12 for i in range(12)])
    # real clips score 0.93 on 256 clips (bounces missed at 16x16 leave their knocks unexplained)
    assert real["onsets_near_bounce"] >= 0.7 and real["bounces_with_onset"] >= 0.9, real
    assert chance["onsets_near_bounce"] <= real["onsets_near_bounce"] / 2, (real, chance)
    assert chance["onsets"] == real["onsets"]  # the same sounds, paired with other pictures
    with pytest.raises(ValueError, match="permutation"):
        sync_report(items, FPS, SR, pair_with=[0] * 12)
    with pytest.raises(ValueError, match="'video' and 'audio'"):
        sync_report([{"video": items[0]["video"]}], FPS, SR)


def test_onsets_after_the_last_frame_are_not_scored(data):
    """A knock after the last frame's start has no visible bounce to match: sync_report leaves it out."""
    video = data[0]["video"][:, :1].expand(3, 16, 16, 16)  # a still clip: no bounce
    early, late = knocks([1.0]), knocks([1.9])  # 16 frames at 8 fps: the last frame starts at 1.875 s
    assert sync_report([{"video": video, "audio": early}], FPS, SR)["onsets"] == 1
    assert sync_report([{"video": video, "audio": late}], FPS, SR)["onsets"] == 0


class FakePipe:
    """Returns real clips of ``data`` for ``generate``: in order (perfect sync), or with every clip's sound taken from
    another clip (``shuffle``); ``video=``: the given videos with the sound of the real clip that has that video."""

    def __init__(self, data, shuffle=False, first=12):
        self.data, self.shuffle, self.first, self.calls = data, shuffle, first, []
        self.adapter = type("Adapter", (), {"fps": data.fps, "sample_rate": data.sample_rate})()

    def generate(self, n, seed=0, progress=False, video=None, audio=None, **options):
        self.calls.append({"n": n, "video": video, "audio": audio, **options})
        if audio is not None:  # audio-to-video: the video of the real clip that has that sound
            real = [self.data[i] for i in range(len(self.data))]
            picture = [next(item["video"] for item in real if torch.equal(item["audio"], a)) for a in audio]
            return [{"video": v, "audio": a} for v, a in zip(picture, audio)]
        if video is not None:
            real = [self.data[i] for i in range(len(self.data))]
            sound = [next(item["audio"] for item in real if torch.equal(item["video"], v)) for v in video]
            return [{"video": v, "audio": a} for v, a in zip(video, sound)]
        items = [self.data[self.first + i] for i in range(n)]
        audio = [items[(i + 5) % n if self.shuffle else i]["audio"] for i in range(n)]
        return [{"video": item["video"], "audio": a} for item, a in zip(items, audio)]


def test_evaluator_rows_with_a_perfect_and_a_shuffled_fake(data):
    evaluator = AVSyncEvaluator(n=6, dependence=False)
    pipe = FakePipe(data)
    report = evaluator(pipe, data)
    assert set(report) == {"generated", "real", CHANCE_ROW, "video-to-audio", "audio-to-video"}
    assert pipe.calls[0]["length"] == pytest.approx(data.num_frames / data.fps)  # as long as the real clips
    assert "length" not in pipe.calls[1] and len(pipe.calls[1]["video"]) == 6  # held-out real videos
    assert len(pipe.calls[2]["audio"]) == 6  # and their sound
    assert report["generated"]["temporal_change_ratio"] > 0
    for row in ("generated", "real", "video-to-audio", "audio-to-video"):
        assert report[row]["onsets_near_bounce"] >= 0.6, (row, report[row])  # real clips: about 0.9 on average
        assert report[row]["sync_vs_chance"] > 2, (row, report[row])
    assert report[CHANCE_ROW]["sync_vs_chance"] == pytest.approx(1.0)
    # per-track quality: the fake's clips are real, so as near the held-out clips as the other real clips are
    for key in ("video_frechet_distance", "audio_frechet_distance"):
        assert 0 < report["generated"][key] < 2 * report["real"][key], (key, report["generated"], report["real"])
    assert report["generated"]["audio_voiced_share"] > 0.3 and report["real"]["audio_voiced_share"] > 0.3  # ~0.6
    for key in OBJECT_STABILITY_KEYS:  # real clips both: alike (at 16 x 16 the area changes ~0.1 from pixel steps)
        generated, real = report["generated"][key], report["real"][key]
        assert 0 <= generated <= 2 * real + 0.01 and 0 <= real <= 2 * generated + 0.01, (key, generated, real)
    assert (
        "video_frechet_distance" not in report[CHANCE_ROW] and "audio_frechet_distance" not in report["video-to-audio"]
    )
    for row in ("generated", "real", "video-to-audio", "audio-to-video"):  # in sync with their own pictures as well
        assert report[row]["sync_vs_own_chance"] > 2 and 0 < report[row]["own_chance"] < 0.5, (row, report[row])
    assert "own_chance" not in report[CHANCE_ROW]
    shuffled = evaluator(FakePipe(data, shuffle=True), data)
    assert shuffled["generated"]["sync_vs_chance"] < report["generated"]["sync_vs_chance"] / 2
    assert shuffled["generated"]["sync_vs_own_chance"] < report["generated"]["sync_vs_own_chance"] / 2
    alone = AVSyncEvaluator(n=6, video_to_audio=False, audio_to_video=False, dependence=False)(pipe, data)
    assert set(alone) == {"generated", "real", CHANCE_ROW}


class DegradedPipe(FakePipe):
    """The fake's clips with uniform noise for frames and white noise (``silent=False``) or zeros for sound."""

    def __init__(self, data, silent):
        super().__init__(data)
        self.silent = silent

    def generate(self, n, seed=0, progress=False, **options):
        noise = torch.Generator().manual_seed(seed)
        items = super().generate(n, seed=seed, progress=progress, **options)
        return [
            {
                "video": torch.rand(item["video"].shape, generator=noise),
                "audio": (0 if self.silent else 0.3) * torch.randn(item["audio"].shape, generator=noise),
            }
            for item in items
        ]


def test_evaluator_quality_of_degraded_tracks(data, caplog):
    """Noise frames and silent or noisy sound: both Fréchet distances far above the real-vs-real level (about 20 and
    30 at n=6, against thousands for noise and hundreds for silence), no pitched frames; n=6 warns that the Fréchet
    distances are mostly sampling noise."""
    evaluator = AVSyncEvaluator(n=6, video_to_audio=False, audio_to_video=False, dependence=False)
    for silent in (True, False):
        with caplog.at_level("WARNING", logger="mmdiff.eval"):
            report = evaluator(DegradedPipe(data, silent), data)
        generated, real = report["generated"], report["real"]
        for key in ("video_frechet_distance", "audio_frechet_distance"):
            assert generated[key] > 5 * real[key], (silent, key, generated, real)
        assert generated["audio_voiced_share"] == 0 and real["audio_voiced_share"] > 0.3, (silent, generated, real)
        assert generated["sync_vs_chance"] == 0  # no onset at all near a bounce (no bounce is seen in noise)
    assert "(video track)" in caplog.text and "(audio track)" in caplog.text and "n=6" in caplog.text


def test_evaluator_errors_and_config(data):
    pipe = FakePipe(data)
    pipe.adapter = object()
    with pytest.raises(ValueError, match="fps and sample_rate"):
        AVSyncEvaluator(n=4, dependence=False)(pipe, data)
    with pytest.raises(ValueError, match="n must be"):
        AVSyncEvaluator(n=1)
    with pytest.raises(ValueError, match="needs 2 x n"):
        AVSyncEvaluator(n=13, dependence=False)(FakePipe(data), data)
    evaluator = instantiate(OmegaConf.load(CONF))
    assert isinstance(evaluator, AVSyncEvaluator) and evaluator.n == 32
    assert evaluator.video_to_audio and evaluator.audio_to_video
