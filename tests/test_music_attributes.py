"""Music attribute estimators (prompt adherence without a pretrained network) and MusicSynth's captions."""

import re

import librosa
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mmdiff.modalities.audio.attributes import (
    MusicAttributeEstimator,
    adherence,
    adherence_table,
    parse_prompt,
)
from mmdiff.modalities.audio.sources import music_or_folder
from mmdiff.modalities.audio.synth import CONTOURS, REGISTERS, TEMPOS, MusicSynth

SR = 16000
KEYS = ("instrument", "tempo", "register")


@pytest.fixture(scope="module")
def banded():
    return MusicSynth(size=1000, registers=REGISTERS, tempos=TEMPOS, seed=0)


@pytest.fixture(scope="module")
def estimator(banded):
    return MusicAttributeEstimator.from_synth(banded, n_per_class=9)  # clips 0..35: every combination once


@pytest.fixture(scope="module")
def held_out(banded, estimator):
    indices = range(500, 572)  # 72 clips: 18 per instrument, 24 per register and per tempo
    truth = [{k: banded.attributes(i)[k] for k in KEYS} for i in indices]
    return truth, estimator.estimate([banded.render(i) for i in indices], SR)


def test_parse_prompt():
    assert parse_prompt("a fast organ melody") == {"instrument": "organ", "tempo": "fast"}
    assert parse_prompt("a melody in a high register") == {"register": "high"}
    assert parse_prompt("A slow, deep Plucked-string tune") == {
        "instrument": "pluck",
        "tempo": "slow",
        "register": "low",
    }
    assert parse_prompt("an up-tempo chiptune riff, mid-range") == {
        "tempo": "fast",
        "instrument": "square",
        "register": "middle",
    }
    assert parse_prompt("a pure sine tone at a moderate pace") == {"instrument": "sine", "tempo": "moderate"}
    assert parse_prompt("") == {} and parse_prompt("a red circle") == {}
    with pytest.raises(TypeError, match="need a str"):
        parse_prompt(["fast"])


def test_captions_vary_and_tell_the_truth(banded):
    named_sets, captions = set(), set()
    for i in range(24):
        attrs = banded.attributes(i)
        audio = banded[(i, 0)]["audio"]
        for item_seed in range(8):
            item = banded[(i, item_seed)]
            assert torch.equal(item["audio"], audio)  # the phrasing never changes the clip
            caption = item["caption"]
            captions.add(caption)
            named = parse_prompt(caption)
            assert named and all(attrs[k] == v for k, v in named.items()), (caption, attrs)
            named_sets.add(frozenset(named))
            words = set(re.findall(r"[a-z]+", caption.lower()))
            assert words & set(CONTOURS) <= {attrs["contour"]}, (caption, attrs)
            for bpm in re.findall(r"(\d+) BPM", caption):
                assert int(bpm) == round(attrs["bpm"])
            if "pentatonic" in caption:
                assert "C major pentatonic" in caption
        assert banded[(i, 3)]["caption"] == banded[(i, 3)]["caption"]  # deterministic per key
        assert banded.caption(i) == banded.caption(i)
    assert len(captions) > 150  # 192 (clip, item seed) pairs, almost all phrased differently
    assert frozenset({"instrument"}) in named_sets and frozenset(KEYS) in named_sets and len(named_sets) >= 6


def test_bands_are_audible(banded, held_out):
    truth, estimates = held_out
    medians = {r: [e["median_midi"] for t, e in zip(truth, estimates) if t["register"] == r] for r in REGISTERS}
    assert max(medians["low"]) < min(medians["middle"]) and max(medians["middle"]) < min(medians["high"])
    assert min(medians["high"]) - max(medians["low"]) > 12  # more than an octave apart, measured on the audio
    rates = {t: np.median([e["note_rate"] for u, e in zip(truth, estimates) if u["tempo"] == t]) for t in TEMPOS}
    assert rates["slow"] * 1.2 < rates["moderate"] and rates["moderate"] * 1.2 < rates["fast"]


def test_contour_word_is_true_of_the_audio(banded):
    checked = 0
    for i in range(60):
        contour = banded.attributes(i)["contour"]
        if contour not in ("rising", "falling"):
            continue
        f0 = librosa.yin(banded.render(i).astype(np.float64), fmin=65, fmax=2100, sr=SR, frame_length=1024)
        midi = librosa.hz_to_midi(f0)  # (frames,)
        third = len(midi) // 3
        first, last = np.median(midi[:third]), np.median(midi[-third:])
        assert (last > first) == (contour == "rising"), (i, contour, first, last)
        checked += 1
    assert checked >= 10


def test_estimator_matches_real_clips_well_above_chance(estimator, held_out):
    truth, estimates = held_out
    shares = adherence(truth, estimates)
    chance = estimator.chance()
    assert chance == {"instrument": 0.25, "tempo": 1 / 3, "register": 1 / 3}
    assert shares["instrument"] >= 0.95 and shares["register"] >= 0.95 and shares["tempo"] >= 0.8, shares
    # Fitted tempo thresholds sit between the classes' note rates (eighths per second: 2-2.7, 3.3-4, 5-6).
    assert 2.4 < estimator.tempo_thresholds[0] < 3.5 < estimator.tempo_thresholds[1] < 5.2
    table = adherence_table(shares, shares, chance)
    instrument = f"{100 * shares['instrument']:.0f}%"
    assert f"| instrument | {instrument} | {instrument} | 25% |" in table.splitlines()


def test_instrument_classifier_does_not_depend_on_pitch(estimator):
    # Default synth: other pitch range (MIDI 55-79), other tempi and rhythm than the clips it was fitted on.
    plain = MusicSynth(size=40, seed=5)
    estimates = estimator.estimate([plain[i]["audio"] for i in range(40)], SR)  # (1, T) tensors are accepted
    assert (
        adherence([{"instrument": plain.attributes(i)["instrument"]} for i in range(40)], estimates)["instrument"]
        >= 0.9
    )


def test_adherence_and_errors(estimator):
    requested = [{"instrument": "organ", "tempo": "fast"}, {"tempo": "slow"}, {}]
    estimated = [{"instrument": "organ", "tempo": "slow", "register": "low"}] * 3
    assert adherence(requested, estimated) == {"instrument": 1.0, "tempo": 0.5}
    with pytest.raises(ValueError, match="2 requests but 3 estimates"):
        adherence(requested[:2], estimated)
    with pytest.raises(RuntimeError, match="call fit"):
        MusicAttributeEstimator().estimate([np.zeros(SR, np.float32)])
    with pytest.raises(ValueError, match="at least two instruments"):
        MusicAttributeEstimator().fit([np.sin(np.arange(SR) * 0.1)] * 2, ["sine", "sine"], SR)
    silent = estimator.estimate([np.zeros(SR, np.float32)], SR)[0]
    assert silent["register"] == "none"


def test_config_passes_bands_to_the_synth():
    conf = OmegaConf.load("conf/data/music.yaml")
    assert conf.synth.registers is None and conf.synth.tempos is None  # default: today's data
    conf.synth.size = 8
    conf.synth.registers = {k: list(v) for k, v in REGISTERS.items()}
    conf.synth.tempos = {k: list(v) for k, v in TEMPOS.items()}
    ds = music_or_folder(sample_rate=conf.sample_rate, duration=conf.duration, synth=conf.synth)
    assert ds.registers == REGISTERS and ds.tempos == TEMPOS
    assert [ds.attributes(i)["register"] for i in range(0, 8, 4)] == ["low", "middle"]
