"""The built-in audio-video data (mmdiff.modalities.av.synth): moving shapes with a knock at every bounce."""

import math

import numpy as np
import pytest
import torch

from mmdiff.modalities.av import PITCHES, SoundingShapes, sounding_shapes_or_folder
from mmdiff.modalities.video import MovingShapes

ROOT_CONF = "conf/data/sounding_shapes.yaml"


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"channels": 2, "fps": 12.5, "sample_rate": 22050, "num_frames": 7, "resolution": (16, 24)},
        {"fps": 30.0, "sample_rate": 8000, "num_frames": 16, "resolution": 12},
    ],
)
def test_items_have_the_documented_shapes_and_lengths(settings):
    ds = SoundingShapes(size=6, **settings)
    frames = settings.get("num_frames", 16)
    h, w = (
        (settings["resolution"],) * 2
        if isinstance(settings.get("resolution"), int)
        else settings.get("resolution", (16, 16))
    )
    samples = round(frames / settings.get("fps", 8.0) * settings.get("sample_rate", 16000))
    assert len(ds) == 6 and ds.num_samples == samples and ds.num_classes == 3
    for key in (0, 5, (4, 123)):
        item = ds[key]
        assert item["video"].shape == (3, frames, h, w) and item["video"].dtype == torch.float32
        assert item["audio"].shape == (settings.get("channels", 1), samples) and item["audio"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["label"].shape == () and isinstance(item["caption"], str)
        assert 0 <= item["video"].min() and item["video"].max() <= 1 and item["audio"].abs().max() <= 1
    assert "SoundingShapes: 6 clips" in ds.summary() and "\n" not in ds.summary()


def test_deterministic_by_seed_and_the_caption_phrasing_never_changes_the_media():
    a, b, c = SoundingShapes(size=8, seed=3), SoundingShapes(size=8, seed=3), SoundingShapes(size=8, seed=4)
    for i in range(8):
        assert torch.equal(a[i]["audio"], b[i]["audio"]) and a[i]["caption"] == b[i]["caption"]
        one, two = a[(i, 1)], a[(i, 2)]
        assert torch.equal(one["audio"], two["audio"]) and torch.equal(one["video"], two["video"])
    assert any(not torch.equal(a[i]["audio"], c[i]["audio"]) for i in range(8))
    assert len({a[(0, s)]["caption"] for s in range(30)}) > 3  # the item seed phrases the caption


def test_pixels_labels_and_captions_are_those_of_moving_shapes():
    settings = {"size": 9, "num_frames": 8, "resolution": (16, 20), "num_objects": (1, 2), "seed": 5}
    ds, ms = (
        SoundingShapes(**settings),
        MovingShapes(**settings, speed_range=(0.025, 0.0625), radius_range=(0.15, 0.22)),
    )
    for key in (0, 4, 8, (7, 99)):
        item, video_item = ds[key], ms[key]
        assert torch.equal(item["video"], video_item["video"]) and torch.equal(item["label"], video_item["label"])
        assert item["caption"].startswith(video_item["caption"]) and len(item["caption"]) > len(video_item["caption"])
    attrs = ds.attributes(4)
    assert {k: v for k, v in attrs.items() if k != "bounces"} == ms.attributes(4)
    assert attrs["bounces"] == len(ds.bounces(4))


def test_bounce_times_rebuild_the_frames_positions():
    """Moving at the start velocity and flipping one axis at each reported bounce lands on the positions that
    MovingShapes renders (reflect in closed form): the bounce times are exact, none missing, none extra."""
    ds = SoundingShapes(size=40, num_objects=(1, 2), speed_range=(0.03, 0.2))
    total = 0
    for i in range(40):
        bounces = ds.bounces(i)
        total += len(bounces)
        assert all(0 < b["frame"] < ds.num_frames and b["time"] == pytest.approx(b["frame"] / ds.fps) for b in bounces)
        assert [b["frame"] for b in bounces] == sorted(b["frame"] for b in bounces)
        for number, obj in enumerate(ds.moving_shapes.trajectories(i)):
            for axis, name in enumerate("yx"):
                flips = [b["frame"] for b in bounces if b["object"] == number and b["axis"] == name]
                assert all(
                    b["speed"] == pytest.approx(abs(obj["velocity"][axis]))
                    for b in bounces
                    if b["object"] == number and b["axis"] == name
                )
                t = np.arange(ds.num_frames, dtype=np.float64)  # (F,)
                # the integral of the velocity: +v until the first flip, -v until the next, ...
                moved = obj["velocity"][axis] * (
                    t + sum(2 * (-1) ** (k + 1) * np.maximum(t - f, 0.0) for k, f in enumerate(flips))
                )
                np.testing.assert_allclose(obj["positions"][0, axis] + moved, obj["positions"][:, axis], atol=1e-9)
    assert total > 40


def test_knocks_start_at_the_bounces_and_silence_lies_far_from_any():
    ds = SoundingShapes(size=60)
    sr, checked, silent = ds.sample_rate, 0, 0
    for i in range(60):
        audio = ds.render_audio(i)[0].astype(np.float64)  # (S,)
        bounces = ds.bounces(i)
        if not bounces:
            assert not audio.any()  # exact digital silence
            silent += 1
            continue
        first = math.ceil(bounces[0]["time"] * sr)
        assert not audio[:first].any() and np.abs(audio[first : first + 3]).max() > 0  # zeros up to the first knock
        for previous, bounce in zip([None, *bounces[:-1]], bounces):
            start = math.ceil(bounce["time"] * sr)
            if (previous is not None and bounce["time"] - previous["time"] < 0.15) or bounce["amplitude"] < 0.2:
                continue  # rising energy is checked on clear knocks: not on top of a fresh one, not near silent
            before, after = audio[max(0, start - 160) : start], audio[start : start + 160]  # 10 ms on each side
            assert _rms(after) > 3 * _rms(before) + 1e-3, (i, bounce)
            assert (
                np.abs(audio[start : start + round(0.004 * sr)]).max() > 0.3 * bounce["amplitude"]
            )  # attack: a few ms
            checked += 1
    assert checked > 20 and silent < 10


def _peak_hz(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), n=8 * len(audio)))
    return float(np.fft.rfftfreq(8 * len(audio), 1 / sr)[np.argmax(spectrum)])


def test_the_pitch_is_set_by_the_shape():
    ds = SoundingShapes(size=45)
    peaks: dict[str, list[float]] = {name: [] for name in PITCHES}
    for i in range(45):
        bounces = ds.bounces(i)
        if bounces:
            start = math.ceil(bounces[0]["time"] * ds.sample_rate)
            window = ds.render_audio(i)[0, start : start + 4000]  # 0.25 s
            if len(window) == 4000:
                shape = ds.moving_shapes.trajectories(i)[0]["shape"]
                peaks[shape].append(_peak_hz(window, ds.sample_rate))
    for shape, found in peaks.items():
        semitones = 12 * np.abs(np.log2(np.array(found) / PITCHES[shape]))
        assert len(found) >= 5 and semitones.max() < 1.2, (shape, found)  # the size bends it by 1 semitone at most
    means = {shape: 12 * np.log2(np.mean(found)) for shape, found in peaks.items()}
    assert min(abs(means[a] - means[b]) for a in means for b in means if a < b) > 5  # clearly distinct pitches
    chosen = {"circle": 200.0, "square": 300.0, "triangle": 450.0}
    low = SoundingShapes(size=12, pitches=chosen, size_bend=0.0)
    found = [
        (obj["shape"], b["pitch"])
        for i in range(12)
        for obj in low.moving_shapes.trajectories(i)
        for b in low.bounces(i)
    ]
    assert found and all(pitch == chosen[shape] for shape, pitch in found)


def test_loudness_grows_with_the_normal_speed():
    ds = SoundingShapes(size=120)
    speeds, peaks = [], []
    for i in range(120):
        bounces = ds.bounces(i)
        if bounces and (len(bounces) == 1 or bounces[1]["time"] - bounces[0]["time"] > 0.05):
            start = math.ceil(bounces[0]["time"] * ds.sample_rate)
            peaks.append(float(np.abs(ds.render_audio(i)[0, start : start + 400]).max()))  # the first 25 ms
            speeds.append(bounces[0]["speed"])
    speeds, peaks = np.array(speeds), np.array(peaks)
    assert len(speeds) > 40 and np.corrcoef(speeds, peaks)[0, 1] > 0.98
    assert peaks.max() <= ds.level and peaks[np.argmax(speeds)] > 3 * peaks[np.argmin(speeds)]


def test_stereo_pans_by_x_with_constant_power():
    mono, stereo = SoundingShapes(size=40), SoundingShapes(size=40, channels=2)
    checked = 0
    for i in range(40):
        bounces = stereo.bounces(i)
        if len(bounces) != 1:
            continue
        left, right = stereo.render_audio(i).astype(np.float64)
        pan = bounces[0]["position"][1] / stereo.resolution[1]  # 0 left .. 1 right
        assert 2 / np.pi * np.arctan2(_rms(right), _rms(left)) == pytest.approx(pan, abs=1e-4)
        np.testing.assert_allclose(left**2 + right**2, mono.render_audio(i)[0].astype(np.float64) ** 2, atol=1e-6)
        checked += 1
    assert checked > 5
    walls = {b["wall"]: b for i in range(40) for b in stereo.bounces(i) if b["axis"] == "x"}
    assert walls["left"]["position"][1] < stereo.resolution[1] / 2 < walls["right"]["position"][1]


def test_busy_clips_never_clip_and_the_defaults_give_about_one_bounce_per_second():
    busy = SoundingShapes(size=30, num_objects=(3, 4), speed_range=(0.2, 0.25), decay=0.5, level=1.0)
    assert max(float(np.abs(busy.render_audio(i)).max()) for i in range(30)) <= 0.99 + 1e-6
    ds = SoundingShapes(size=200)
    counts = np.array([len(ds.bounces(i)) for i in range(200)])
    assert 1.0 <= counts.mean() / ds.duration * 2 <= 2.2 and (counts > 0).mean() > 0.85  # per 2 s; see the docs


def test_item_keys_name_the_audio_settings():
    ds = SoundingShapes(size=4)
    key = ds.item_key(2)
    assert key.startswith("SoundingShapes:") and key != ds.moving_shapes.item_key(2)
    assert key == SoundingShapes(size=99).item_key(2) == ds.item_key(2, item_seed=7) != ds.item_key(3)
    changed = [
        {"sample_rate": 22050},
        {"channels": 2},
        {"fps": 10.0},
        {"decay": 0.2},
        {"pitches": [300.0, 400.0, 500.0]},
        {"level": 0.5},
        {"seed": 1},
        {"radius_range": (0.15, 0.2)},
    ]
    keys = {SoundingShapes(size=4, **settings).item_key(2) for settings in changed}
    assert len(keys) == len(changed) and key not in keys


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"fps": 0}, "fps"),
        ({"sample_rate": 16000.5}, "sample_rate"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"channels": 3}, "channels"),
        ({"decay": 0}, "decay"),
        ({"attack": -0.001}, "attack"),
        ({"level": 1.5}, "level"),
        ({"size_bend": -1}, "size_bend"),
        ({"pitches": [100.0, 200.0]}, "pitches"),
        ({"pitches": {"circle": 100.0}}, "pitches"),
        ({"pitches": [100.0, 200.0, 9000.0]}, "pitches"),
        ({"speed_range": (0.1, 0.01)}, "speed_range"),
        ({"shapes": ["hexagon"]}, "hexagon"),
    ],
)
def test_bad_arguments_give_one_line_errors_naming_them(settings, name):
    with pytest.raises(ValueError, match=name) as error:
        SoundingShapes(size=2, **settings)
    assert "\n" not in str(error.value)


def test_silent_clips_say_so_and_knocking_clips_say_they_knock():
    ds = SoundingShapes(size=60)
    for i in range(60):
        words = ds[i]["caption"]
        if ds.attributes(i)["bounces"]:
            assert "knock" in words or "tock" in words, words
        else:
            assert "silen" in words or "sound" in words, words
        assert ds.caption(i) == words  # the caption method draws what a plain index gets


def test_the_config_builds_the_synth_and_a_folder_with_the_shared_settings(tmp_path):
    from _helpers import ROOT
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / ROOT_CONF)
    ds = instantiate(cfg, channels=2, synth={"size": 5})
    assert isinstance(ds, SoundingShapes) and ds.channels == 2 and len(ds) == 5 and ds.decay == 0.12
    assert ds[0]["audio"].shape == (2, 32000) and ds.resolution == (16, 16)
    folder = pytest.importorskip("mmdiff.modalities.av.folder")  # the folder of videos with sound (helper D)
    io = pytest.importorskip("mmdiff.modalities.av.io")
    clip = SoundingShapes(size=1, num_frames=8)[0]
    io.write_av(tmp_path / "a.mp4", clip["video"], 8.0, clip["audio"], 16000)
    data = sounding_shapes_or_folder(
        root=str(tmp_path), num_frames=8, sample_rate=16000, channels=1, folder=dict(cfg.folder, scan_cache=False)
    )
    assert isinstance(data, folder.AudioVideoFolder) and len(data) == 1
    assert data[0]["audio"].shape == (1, 16000) and data[0]["video"].shape == (3, 8, 16, 16)
