"""Audio windows decoded from a seek equal the same window of a full decode and resample (issue 14).

Every file is made here (3 s of a chirp plus white noise, at 44.1 and 48 kHz, stereo), loaded at 16 kHz, and each
window read with ``load_audio(..., offset=, duration=)`` is compared with the whole-file result sliced at the same
place. Measured differences (PyAV 18, torchaudio's default sinc resampler): wav, flac, mp3, ogg/opus, opus and m4a
(aac with noise substitution off) all match within 1.2e-7 (float32 rounding of the resampler), so the bound is 1e-6.
FFmpeg's aac encoder turns on perceptual noise substitution by default: the decoder fills those bands from a random
generator that runs through the whole stream, so after a seek the noise differs (up to ~0.1 on this signal, whose
noise is 0.05 RMS) while the music does not; that case is checked for matching energy, not samples.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mmdiff.modalities.audio import AudioDecodeError, AudioFolder, audio_info, load_audio
from mmdiff.modalities.audio import io as audio_io

SR = 16000  # every file is loaded at this rate
SECONDS = 3.0
TOLERANCE = 1e-6  # measured max 1.2e-7 for every format below


def chirp(rate: int, seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    """A 200 Hz -> 2 kHz chirp plus white noise (RMS 0.05), left and 0.7 x right: float32 (2, T)."""
    t = np.arange(round(seconds * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * (200 * t + 300 * t**2)) + 0.05 * np.random.default_rng(seed).standard_normal(len(t))
    return np.stack([x, 0.7 * x]).astype(np.float32)


def encode(path: Path, data: np.ndarray, rate: int, codec: str, options: dict | None = None) -> Path:
    """Write ``data`` (C, T) with a PyAV encoder (planar float in; PyAV converts to what the codec takes)."""
    layout = {1: "mono", 2: "stereo"}[data.shape[0]]
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
    frame.sample_rate, frame.pts = rate, 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        stream.codec_context.options = options or {}
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


CODECS = {  # suffix -> (encoder, options)
    ".wav": ("pcm_s16le", None),
    ".flac": ("flac", None),
    ".mp3": ("libmp3lame", None),
    ".ogg": ("libopus", None),  # FFmpeg has no vorbis encoder here: ogg holds opus
    ".opus": ("libopus", None),
    ".m4a": ("aac", {"aac_pns": "0"}),  # noise substitution off: see the module notes
}
CASES = [(s, r) for s in CODECS for r in (44100, 48000) if not (CODECS[s][0] == "libopus" and r == 44100)]


def make(tmp_path: Path, suffix: str, rate: int, seconds: float = SECONDS, name: str = "a") -> Path:
    codec, options = CODECS[suffix]
    return encode(tmp_path / f"{name}{suffix}", chirp(rate, seconds), rate, codec, options)


@pytest.fixture
def seeks(monkeypatch):
    """Counts decoding passes that started from a seek and were kept (not fallen back from)."""
    calls = {"seek": 0, "start": 0}
    original = audio_io._decode_span

    def spy(path, first, last, seek):
        result = original(path, first, last, seek)
        if result[0] is not None:
            calls["seek" if seek else "start"] += 1
        return result

    monkeypatch.setattr(audio_io, "_decode_span", spy)
    return calls


@pytest.mark.parametrize(("suffix", "rate"), CASES)
def test_window_equals_full_decode(tmp_path, suffix, rate, seeks):
    path = make(tmp_path, suffix, rate)
    full = load_audio(path, SR, channels=2)  # (2, T)
    info = audio_info(path)
    assert audio_io.decoded_length(info["duration"], info["sample_rate"], SR) == full.shape[1]  # length from header
    length, n = full.shape[1], SR  # 1 s windows
    for start in (0, 3, SR // 2 + 7, length // 2, length - n - 1, length - n):
        window = load_audio(path, SR, channels=2, offset=start / SR, duration=n / SR)
        assert window.shape == (2, n), (start, window.shape)
        error = (window - full[:, start : start + n]).abs().max().item()
        assert error <= TOLERANCE, f"{path.name} at {start}: max abs error {error:.2e}"
    assert seeks["seek"] >= 4  # the windows past the pre-roll came from a seek, not a decode from the start
    tail = load_audio(path, SR, offset=2.25)  # to the end, mono
    assert torch.allclose(tail, full.mean(0, keepdim=True)[:, 36000:], atol=TOLERANCE, rtol=0)
    past = load_audio(path, SR, offset=2.5, duration=1.0)  # runs past the end: what there is
    assert past.shape == (1, length - 40000)


def test_aac_noise_substitution_matches_in_energy(tmp_path):
    path = encode(tmp_path / "pns.m4a", chirp(44100), 44100, "aac")  # FFmpeg's default: noise substitution on
    full = load_audio(path, SR)
    window = load_audio(path, SR, offset=1.0, duration=1.0)
    reference = full[:, SR : 2 * SR]
    assert window.shape == reference.shape
    rms = lambda x: x.pow(2).mean().sqrt().item()  # noqa: E731
    assert rms(window - reference) < 0.05  # below the signal's own noise: only substituted noise differs
    assert abs(rms(window) / rms(reference) - 1) < 0.02


def test_window_arguments(tmp_path):
    path = make(tmp_path, ".flac", 44100)
    assert load_audio(path, SR, offset=1.0, duration=0).shape == (1, 0)
    with pytest.raises(ValueError, match="offset and duration"):
        load_audio(path, SR, offset=-1.0)


def old_item(full: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """What ``AudioFolder`` returned before seeking: a crop of the whole decoded file."""
    start = int(torch.randint(0, full.shape[1] - n + 1, (1,), generator=generator))
    return full[:, start : start + n]


def test_folder_items_are_the_full_decode_crops(tmp_path, seeks):
    for suffix, rate in ((".mp3", 44100), (".flac", 48000), (".ogg", 48000), (".m4a", 44100), (".wav", 48000)):
        make(tmp_path, suffix, rate, name=f"f{suffix[1:]}")
    ds = AudioFolder(tmp_path, sample_rate=SR, channels=2, duration=0.5)
    n = ds.num_samples
    for index, clip in enumerate(ds.clips):
        full = load_audio(clip.path, SR, channels=2)
        for seed in (0, 1, 7, 12345):
            item = ds[(index, seed)]["audio"]
            expected = old_item(full, n, torch.Generator().manual_seed(seed))
            assert item.shape == (2, n)
            assert (item - expected).abs().max().item() <= TOLERANCE, (clip.path.name, seed)
        torch.manual_seed(3)  # no seed: torch's global RNG, drawn once as before
        item = ds[index]["audio"]
        torch.manual_seed(3)
        assert torch.allclose(item, old_item(full, n, None), atol=TOLERANCE, rtol=0)
        positions = [0, 1, 3, ds.num_crops(index) - 1]
        for k, crop in zip(positions, ds.crops(index, positions), strict=True):
            start = min(k * n, full.shape[1] - n)
            assert torch.allclose(crop["audio"], full[:, start : start + n], atol=TOLERANCE, rtol=0), (clip.path, k)
    assert seeks["seek"] > 0
    cached = AudioFolder(tmp_path, sample_rate=SR, channels=2, duration=0.5, cache=True)
    assert torch.allclose(cached[(0, 5)]["audio"], ds[(0, 5)]["audio"], atol=TOLERANCE, rtol=0)


def test_header_longer_than_the_file_falls_back_to_a_whole_read(tmp_path):
    make(tmp_path, ".flac", 44100)
    ds = AudioFolder(tmp_path, sample_rate=SR, duration=1.0)
    full = load_audio(ds.clips[0].path, SR)
    ds.clips[0] = replace(ds.clips[0], duration=ds.clips[0].duration + 5.0)  # a header that overstates by 5 s
    header_length, branches = round(8.0 * SR), set()
    for seed in range(12):  # a draw within the real file is read from a seek; one past its end is redrawn on it
        start = int(torch.randint(0, header_length - SR + 1, (1,), generator=torch.Generator().manual_seed(seed)))
        fits = start + SR <= full.shape[1]
        expected = full[:, start : start + SR] if fits else old_item(full, SR, torch.Generator().manual_seed(seed))
        assert torch.allclose(ds[(0, seed)]["audio"], expected, atol=TOLERANCE, rtol=0), seed
        branches.add(fits)
    assert branches == {True, False}
    crops = ds.crops(0, [0, 7])  # crop 7 lies past the real end: the last whole crop, as before
    assert torch.equal(crops[1]["audio"], full[:, -SR:])


@pytest.mark.parametrize("policy", ["pad", "loop"])
def test_short_file_pads_or_loops(tmp_path, policy):
    path = make(tmp_path, ".mp3", 44100, seconds=0.3)
    ds = AudioFolder(tmp_path, sample_rate=SR, duration=0.5, short_policy=policy)
    full = load_audio(path, SR)  # (1, 4800)
    item = ds[(0, 1)]["audio"]
    assert item.shape == (1, 8000)
    expected = full.repeat(1, 2)[:, :8000] if policy == "loop" else torch.nn.functional.pad(full, (0, 8000 - 4800))
    assert torch.equal(item, expected)
    assert torch.equal(ds.crops(0, [0])[0]["audio"], expected)


def test_corrupt_file_is_named(tmp_path):
    path = make(tmp_path, ".mp3", 44100)
    ds = AudioFolder(tmp_path, sample_rate=SR, duration=0.5)
    path.write_bytes(b"\x00garbage" * 100)  # corrupted after the scan
    with pytest.raises(AudioDecodeError, match=str(path)):
        ds[(0, 1)]
    with pytest.raises(AudioDecodeError, match=str(path)):
        load_audio(path, SR, offset=1.0, duration=0.5)
