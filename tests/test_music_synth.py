"""MusicSynth (the built-in synthetic music source) and the music metrics (pitch on scale, Fréchet distance)."""

import time

import numpy as np
import pytest
import torch

from mmdiff.modalities.audio.metrics import (
    FEATURE_NAMES,
    audio_features,
    cents_off_scale,
    frechet_distance,
    music_report,
    pitch_on_scale_share,
)
from mmdiff.modalities.audio.synth import (
    REGISTERS,
    SCALES,
    TEMPOS,
    MusicSynth,
    compose_caption,
    scale_frequencies,
    scale_midi,
    scale_name,
)

SR = 16000


def noise_clips(n, seed=0, length=2 * SR):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-0.8, 0.8, length).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def synth():
    return MusicSynth(size=64, seed=0)


@pytest.fixture(scope="module")
def synth_clips(synth):
    return [synth[i]["audio"][0].numpy() for i in range(16)]


def test_items_have_shape_dtype_label(synth):
    item = synth[0]
    assert item["audio"].shape == (1, 2 * SR) and item["audio"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert len(synth) == 64 and synth.num_classes == 4 and synth.class_names == ("sine", "square", "pluck", "organ")
    other = MusicSynth(size=4, sample_rate=22050, duration=1.5)
    assert other[1]["audio"].shape == (1, round(1.5 * 22050))
    assert "4 clips" in other.summary() and "c_major_pentatonic" in other.summary()


def test_deterministic_by_seed_and_index(synth):
    a = synth[5]["audio"]
    assert torch.equal(a, MusicSynth(size=64, seed=0)[5]["audio"])
    assert torch.equal(a, synth[(5, 123456789)]["audio"])  # the item seed does not change the clip
    assert not torch.equal(a, synth[6]["audio"])
    assert not torch.equal(a, synth[9]["audio"])  # same instrument, another melody
    assert not torch.equal(a, MusicSynth(size=64, seed=1)[5]["audio"])
    assert synth.notes(5) == MusicSynth(size=64, seed=0).notes(5)


def test_labels_cover_instruments_and_peaks_in_range(synth):
    labels = {int(synth[i]["label"]) for i in range(8)}
    assert labels == set(range(synth.num_classes))
    for i in range(8):
        audio = synth[i]["audio"]
        assert torch.isfinite(audio).all()
        assert 0.5 < audio.abs().max() <= 0.8 + 1e-6


def test_scales_and_errors():
    np.testing.assert_allclose(
        scale_frequencies("c_major_pentatonic", 60, 72), [261.63, 293.66, 329.63, 392.0, 440.0, 523.25], atol=0.01
    )
    assert {"c_major", "a_minor", "c_major_pentatonic"} <= set(SCALES)
    assert set(scale_midi("a_minor", 57, 69) % 12) == set(SCALES["c_major"])
    with pytest.raises(ValueError, match="unknown scale 'd_dorian'.*c_major"):
        MusicSynth(scale="d_dorian")
    with pytest.raises(ValueError, match="unknown instrument.*kazoo.*sine"):
        MusicSynth(instruments=("sine", "kazoo"))
    with pytest.raises(IndexError):
        MusicSynth(size=4)[4]


def test_notes_on_scale_and_dominant_pitch_matches(synth):
    allowed = set(scale_midi("c_major_pentatonic", 55, 79).tolist())
    checked = set()
    for i in range(16):
        notes = synth.notes(i)
        onsets = [n[0] for n in notes]
        assert onsets == sorted(onsets) and onsets[-1] < synth.duration
        assert {n[2] for n in notes} <= allowed
        audio = synth.render(i).astype(np.float64)
        for onset, duration, midi, freq in notes:
            if duration < 0.3:
                continue
            # A single long note, skipping the previous note's release and this one's attack: the strongest FFT
            # peak (parabolic interpolation on a log spectrum, zero-padded) is the note's fundamental.
            seg = audio[round((onset + 0.12) * SR) : round((onset + duration) * SR)]
            spectrum = np.log(np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 16)) + 1e-12)
            k = int(spectrum.argmax())
            y0, y1, y2 = spectrum[k - 1 : k + 2]
            peak_hz = (k + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) * SR / (1 << 16)
            assert abs(1200 * np.log2(peak_hz / freq)) < 20, (synth.instruments[i % 4], midi, peak_hz, freq)
            assert cents_off_scale(peak_hz, "c_major_pentatonic") < 20
            checked.add(synth.instruments[i % 4])
    assert checked == set(synth.instruments)


def test_cents_off_scale():
    np.testing.assert_allclose(
        cents_off_scale([440.0, 880.0, 466.16, 440 * 2 ** (0.5 / 12)], "c_major_pentatonic"), [0, 0, 100, 50], atol=0.1
    )


def test_pitch_on_scale_share_separates_music_from_noise_and_chromatic(synth_clips):
    music = pitch_on_scale_share(synth_clips, SR, "c_major_pentatonic")
    assert music["voiced_share"] > 0.8 and music["on_scale_share"] > 0.9
    assert music["frames"] == 16 * 126 and music["voiced_frames"] <= music["frames"]
    noise = pitch_on_scale_share(noise_clips(4), SR)
    assert noise["voiced_share"] < 0.1
    chromatic = MusicSynth(size=8, scale="chromatic", seed=3)
    off = pitch_on_scale_share([chromatic.render(i) for i in range(8)], SR, "c_major_pentatonic")
    assert off["voiced_share"] > 0.8 and off["on_scale_share"] < music["on_scale_share"] - 0.25


def test_frechet_distance(synth_clips):
    features = audio_features(synth_clips, SR)
    assert features.shape == (16, len(FEATURE_NAMES)) and np.isfinite(features).all()
    assert frechet_distance(features, features) < 1e-6
    other = MusicSynth(size=16, seed=7)
    other_features = audio_features([other.render(i) for i in range(16)], SR)
    noise_features = audio_features(noise_clips(16, seed=1), SR)
    same_kind = frechet_distance(other_features, features)
    assert frechet_distance(noise_features, features) > 5 * same_kind
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(features, features[:, :5])


def test_music_report(synth_clips):
    report = music_report(noise_clips(2), [torch.from_numpy(c)[None] for c in synth_clips[:4]], SR)
    assert set(report) == {
        "generated_voiced_share",
        "generated_on_scale_share",
        "reference_voiced_share",
        "reference_on_scale_share",
        "frechet_distance",
    }
    assert report["generated_voiced_share"] < 0.1 < 0.8 < report["reference_voiced_share"]
    assert report["frechet_distance"] > 0


def test_generation_is_fast():
    ds = MusicSynth(size=64, seed=11)
    start = time.perf_counter()
    for i in range(16):
        ds[(i, i)]
    assert time.perf_counter() - start < 1.0


def test_default_score_unchanged_and_items_have_captions(synth):
    # The score of clip 5 as written before captions and bands existed (commit a163e01): defaults keep today's data.
    assert [(round(t, 6), round(n, 6), m) for t, n, m, _ in synth.notes(5)[:3]] == [
        (0.0, 0.402625, 60),
        (0.402625, 0.201313, 72),
        (0.603938, 0.402625, 76),
    ]
    item = synth[(5, 3)]
    assert set(item) == {"audio", "label", "caption"} and isinstance(item["caption"], str) and item["caption"]
    attrs = synth.attributes(5)
    assert attrs["instrument"] == "square" and attrs["scale"] == "C major pentatonic"
    assert attrs["tempo"] == "fast" and 135 <= attrs["bpm"] < 160  # derived from the drawn BPM
    assert attrs["register"] == "middle" and 59 <= attrs["median_midi"] < 74  # derived from the median note


def test_bands_constrain_notes_and_tempo_and_are_balanced():
    ds = MusicSynth(size=72, registers=REGISTERS, tempos=TEMPOS, seed=2)
    combos = set()
    for i in range(36):
        attrs = ds.attributes(i)
        lo, hi = REGISTERS[attrs["register"]]
        assert all(lo <= m <= hi for _, _, m, _ in ds.notes(i)), (i, attrs)
        assert TEMPOS[attrs["tempo"]][0] <= attrs["bpm"] <= TEMPOS[attrs["tempo"]][1]
        combos.add((attrs["instrument"], attrs["register"], attrs["tempo"]))
    assert len(combos) == 36  # every instrument x register x tempo once per 36 clips
    assert "registers low MIDI 43-57" in ds.summary() and "fast 150-180 BPM" in ds.summary()
    with pytest.raises(ValueError, match="registers.high: need low <= high"):
        MusicSynth(registers={"high": (90, 80)})
    with pytest.raises(ValueError, match="tempos: need a mapping"):
        MusicSynth(tempos=[60, 80])


def test_scale_names_and_caption_examples():
    assert scale_name("c_major_pentatonic") == "C major pentatonic"
    assert scale_name("f_sharp_major_pentatonic") == "F sharp major pentatonic"
    assert scale_name((0, 4, 7)) == "C E G"
    attrs = {"instrument": "organ", "tempo": "fast", "bpm": 160.2, "register": "high", "scale": "C major pentatonic"}
    attrs["contour"] = "rising"
    captions = {compose_caption(attrs, np.random.default_rng(s)) for s in range(60)}
    assert len(captions) > 40
    assert any(c.startswith("a ") and c.count(" ") <= 3 for c in captions)  # short ones ("an organ tune") too
    assert any("160 BPM" in c for c in captions)
    assert all(any(w in c for w in ("organ", "fast", "high")) for c in captions)  # never a caption naming nothing
