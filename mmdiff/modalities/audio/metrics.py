"""Metrics that answer "is the generated music music?" for monophonic melodies such as :class:`MusicSynth`'s.

Two views, both reference-free where possible:

- :func:`pitch_on_scale_share`: track the pitch with probabilistic YIN (pyin, Mauch & Dixon 2014, via
  :func:`librosa.pyin`) and ask how much of the audio is pitched at all (``voiced_share``) and how much of the pitched
  audio sits on the scale the training data uses (``on_scale_share``). Noise scores low on the first, random pitches
  on the second. When the data states no scale (a user's folder), :func:`pitch_class_profile` and
  :func:`profile_distance` compare how often each of the 12 pitch classes sounds in two sets of clips instead.
- :func:`frechet_distance` over :func:`audio_features`: a Fréchet distance between Gaussians fitted to small
  handcrafted feature vectors of two sets of clips, in the spirit of FID (Heusel et al. 2017) and FAD, but without a
  pretrained network, so that it runs anywhere on CPU in seconds.

:func:`music_report` combines them for a generated set against a reference set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ...metrics import frechet_distance
from .synth import scale_pitch_classes

# pyin settings. The audio is resampled to ANALYSIS_SR first: pitches up to C7 (2093 Hz) fit below its Nyquist, and
# YIN's cost is proportional to the samples per frame. 1024 / 128 samples at 8 kHz are the 2048 / 256 of 16 kHz
# (128 ms frames, 16 ms hop). A pitch grid of 1/4 semitone (instead of librosa's 1/10) makes pyin's Viterbi pass
# (quadratic in the number of pitch states) about 6x cheaper; with fmin on a semitone, equal-tempered notes still fall
# exactly on grid points, and a 25-cent grid is fine for a 50-cent tolerance.
ANALYSIS_SR = 8000
FRAME_LENGTH = 1024
HOP_LENGTH = 128
RESOLUTION = 0.25  # semitones
PYIN_FMIN = 440.0 * 2 ** ((36 - 69) / 12)  # Hz: C2 (MIDI 36), the default lowest pitch tracked
PYIN_FMAX = 440.0 * 2 ** ((96 - 69) / 12)  # Hz: C7 (MIDI 96), the default highest
PYIN_BATCH = 16  # clips of equal length analysed together (librosa.pyin takes (..., T) input)

# Names of the columns of audio_features(), in order.
FEATURE_NAMES: tuple[str, ...] = (
    *(f"mfcc{i}_mean" for i in range(13)),
    *(f"mfcc{i}_std" for i in range(13)),
    "centroid_mean",
    "centroid_std",
    "bandwidth_mean",
    "bandwidth_std",
    "flatness_mean",
    "flatness_std",
    "rolloff_mean",
    "rolloff_std",
    "rms_mean",
    "rms_std",
    "zcr_mean",
    "zcr_std",
    "onset_strength_mean",
    "onset_strength_std",
    "periodicity_mean",
)


def _as_clips(waveforms: Iterable) -> list[np.ndarray]:
    """A list of 1-D float32 arrays from numpy arrays or torch tensors of shape (T,), (1, T) or (1, 1, T)."""
    clips = []
    for i, w in enumerate(waveforms):
        if hasattr(w, "detach"):  # torch.Tensor, without importing torch here
            w = w.detach().cpu().numpy()
        w = np.asarray(w, dtype=np.float32)
        while w.ndim > 1 and w.shape[0] == 1:
            w = w[0]
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"waveform {i}: need a non-empty mono clip of shape (T,) or (1, T), got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError(f"waveform {i}: contains NaN or inf")
        clips.append(w)
    if not clips:
        raise ValueError("waveforms: need at least one clip, got none")
    return clips


def _pyin(clips: list[np.ndarray], sample_rate: int, fmin: float, fmax: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(f0 (frames,), voiced (frames,)), ...]`` per clip, batching clips of equal length through librosa.pyin."""
    import librosa  # lazily: librosa pulls in numba, which training does not need

    if fmax >= ANALYSIS_SR / 2:
        raise ValueError(f"fmax {fmax:.0f} Hz must be below the analysis Nyquist {ANALYSIS_SR / 2:.0f} Hz")
    out: list = [None] * len(clips)
    by_length: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        by_length.setdefault(len(clip), []).append(i)
    for indices in by_length.values():
        for start in range(0, len(indices), PYIN_BATCH):
            chunk = indices[start : start + PYIN_BATCH]
            y = np.stack([clips[i] for i in chunk])  # (B, T)
            if sample_rate != ANALYSIS_SR:
                y = librosa.resample(y, orig_sr=sample_rate, target_sr=ANALYSIS_SR)  # (B, T')
            f0, voiced, _ = librosa.pyin(
                y,
                fmin=fmin,
                fmax=fmax,
                sr=ANALYSIS_SR,
                frame_length=FRAME_LENGTH,
                hop_length=HOP_LENGTH,
                resolution=RESOLUTION,
            )  # (B, frames) each
            for row, i in enumerate(chunk):
                out[i] = (f0[row], voiced[row])
    return out


def cents_off_scale(f0: np.ndarray, scale: str | Sequence[int]) -> np.ndarray:
    """Distance in cents (0..600) from each frequency in ``f0`` (Hz, any shape) to the nearest pitch class of ``scale``.

    Octaves do not matter: the pitch class of ``f0`` (MIDI number mod 12, fractional) is compared with the scale's.
    """
    midi = 69.0 + 12.0 * np.log2(np.asarray(f0, dtype=np.float64) / 440.0)  # (...,)
    classes = np.asarray(scale_pitch_classes(scale), dtype=np.float64)  # (C,)
    diff = (midi[..., None] - classes) % 12.0  # (..., C) in [0, 12)
    return 100.0 * np.minimum(diff, 12.0 - diff).min(axis=-1)


def voiced_pitches(
    waveforms: Iterable,
    sample_rate: int,
    fmin: float = PYIN_FMIN,
    fmax: float = PYIN_FMAX,
) -> tuple[np.ndarray, int]:
    """Pitch in Hz of every voiced frame of a set of mono clips, pooled: ``(f0 (voiced_frames,), frames)``.

    pyin (Mauch & Dixon 2014) at :data:`ANALYSIS_SR`; ``frames`` counts all frames, voiced or not, so that
    ``len(f0) / frames`` is the share of pitched audio. One pyin pass serves every pitch measure below.
    """
    tracks = _pyin(_as_clips(waveforms), sample_rate, fmin, fmax)
    f0 = np.concatenate([f for f, _ in tracks])  # (frames,)
    voiced = np.concatenate([v for _, v in tracks]) & np.isfinite(f0)  # (frames,)
    return f0[voiced], len(voiced)


def on_scale_share(f0: np.ndarray, scale: str | Sequence[int], tolerance_cents: float = 50.0) -> float:
    """Share of the pitches ``f0`` (Hz, voiced frames) within ``tolerance_cents`` of a pitch class of ``scale``;
    NaN when ``f0`` is empty."""
    return float((cents_off_scale(f0, scale) <= tolerance_cents).mean()) if len(f0) else float("nan")


def pitch_class_profile(f0: np.ndarray) -> np.ndarray:
    """How often each pitch class (C = 0 .. B = 11, nearest semitone) sounds among the pitches ``f0`` (Hz): shape
    (12,), summing to 1; all NaN when ``f0`` is empty. The scale (and key) of a set of clips, measured from them."""
    if not len(f0):
        return np.full(12, np.nan)
    midi = 69.0 + 12.0 * np.log2(np.asarray(f0, dtype=np.float64) / 440.0)  # (V,)
    counts = np.bincount(np.round(midi).astype(np.int64) % 12, minlength=12)  # (12,)
    return counts / counts.sum()


def profile_distance(profile: np.ndarray, reference: np.ndarray) -> float:
    """Total variation distance between two pitch-class profiles: half the sum of absolute differences, from 0 (the
    same pitch classes, equally often) to 1 (no pitch class in common); NaN when either is empty."""
    return float(0.5 * np.abs(np.asarray(profile) - np.asarray(reference)).sum())


def pitch_on_scale_share(
    waveforms: Iterable,
    sample_rate: int,
    scale: str | Sequence[int] = "c_major_pentatonic",
    fmin: float = PYIN_FMIN,
    fmax: float = PYIN_FMAX,
    tolerance_cents: float = 50.0,
) -> dict[str, float]:
    """Share of pitched frames, and share of those on ``scale``, over a set of mono clips.

    Pitch comes from pyin (Mauch & Dixon 2014) at :data:`ANALYSIS_SR` (clips are resampled; 128 ms frames, 16 ms hop,
    a 1/4-semitone pitch grid). Returns

    - ``voiced_share``: voiced frames / all frames, pooled over clips (how much of the audio has a pitch),
    - ``on_scale_share``: voiced frames within ``tolerance_cents`` of a pitch class of ``scale`` / voiced frames
      (NaN when no frame is voiced). With the 50-cent default every pitch is "near" some semitone, so the chromatic
      scale scores 1 and a scale with k of 12 pitch classes scores about k / 12 on random pitches.
    - ``voiced_frames`` and ``frames``: the counts behind the shares.
    """
    f0, frames = voiced_pitches(waveforms, sample_rate, fmin, fmax)  # (voiced_frames,)
    return {
        "voiced_share": len(f0) / frames,
        "on_scale_share": on_scale_share(f0, scale, tolerance_cents),
        "voiced_frames": len(f0),
        "frames": frames,
    }


def _periodicity(y: np.ndarray, sample_rate: int, n_fft: int, hop: int, fmin: float = 60.0, fmax: float = 1000.0):
    """Per-frame peak of the normalised autocorrelation at lags of ``fmin..fmax`` Hz (frames,): a cheap voicing cue.

    Near 1 for a steady pitched frame, near 0 for noise; silent frames score 0.
    """
    import librosa  # lazily: librosa pulls in numba, which training does not need

    frames = librosa.util.frame(np.pad(y, n_fft // 2), frame_length=n_fft, hop_length=hop, axis=0)  # (F, n_fft)
    frames = frames * np.hanning(n_fft)
    spectrum = np.fft.rfft(frames, 2 * n_fft, axis=-1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=-1)[:, :n_fft]  # (F, n_fft)
    lo, hi = int(sample_rate / fmax), min(int(sample_rate / fmin), n_fft - 1)
    energy = acf[:, :1]  # (F, 1)
    normed = np.divide(acf[:, lo : hi + 1], energy, out=np.zeros_like(acf[:, lo : hi + 1]), where=energy > 1e-10)
    return normed.max(axis=-1)


def _clip_features(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """The :data:`FEATURE_NAMES` vector of one clip (F,). Frames of ~64 ms with a 1/4 hop."""
    import librosa  # lazily: librosa pulls in numba, which training does not need

    n_fft = 2 ** round(float(np.log2(0.064 * sample_rate)))
    hop = n_fft // 4
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))  # (n_fft // 2 + 1, frames) magnitude
    mel = librosa.feature.melspectrogram(S=S**2, sr=sample_rate, n_mels=64)  # (64, frames) power
    log_mel = librosa.power_to_db(mel)
    per_frame = [
        librosa.feature.spectral_centroid(S=S, sr=sample_rate)[0],  # Hz: brightness
        librosa.feature.spectral_bandwidth(S=S, sr=sample_rate)[0],  # Hz: spread around the centroid
        librosa.feature.spectral_flatness(S=S)[0],  # 0 (tonal) .. 1 (noise-like)
        librosa.feature.spectral_rolloff(S=S, sr=sample_rate)[0],  # Hz below which 85% of the energy lies
        librosa.feature.rms(S=S, frame_length=n_fft)[0],  # loudness
        librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop)[0],  # noisiness / pitch height
        librosa.onset.onset_strength(S=log_mel, sr=sample_rate),  # note attacks: rhythm density
    ]
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=13)  # (13, frames): timbre (spectral envelope)
    stats = [mfcc.mean(axis=1), mfcc.std(axis=1)]
    stats += [np.array([f.mean(), f.std()]) for f in per_frame]
    stats.append(np.array([_periodicity(y, sample_rate, n_fft, hop).mean()]))
    return np.concatenate(stats)


def audio_features(waveforms: Iterable, sample_rate: int) -> np.ndarray:
    """Handcrafted features of each clip, shape (N, F) with F = len(:data:`FEATURE_NAMES`) = 41.

    Per clip: mean and std over frames of 13 MFCCs (timbre), of spectral centroid, bandwidth, flatness and rolloff
    (brightness, spread, noisiness), of RMS (loudness and its variation), of zero-crossing rate, and of onset strength
    (how often and how sharply notes start); plus the mean periodicity, a cheap voicing cue (peak of the normalised
    autocorrelation at lags of 60..1000 Hz). Meant for :func:`frechet_distance`, which standardises the columns.
    """
    return np.stack([_clip_features(clip, sample_rate) for clip in _as_clips(waveforms)])


def music_report(
    generated: Iterable, reference: Iterable, sample_rate: int, scale: str | Sequence[int] = "c_major_pentatonic"
) -> dict[str, float]:
    """Pitch and feature statistics of ``generated`` clips against ``reference`` clips, as one flat dict.

    Keys: ``generated_voiced_share``, ``generated_on_scale_share``, ``reference_voiced_share``,
    ``reference_on_scale_share`` (see :func:`pitch_on_scale_share`) and ``frechet_distance`` (of
    :func:`audio_features`, generated vs reference, in units of the reference's spread). Flat so it logs as scalars.
    """
    generated, reference = _as_clips(generated), _as_clips(reference)
    report: dict[str, float] = {}
    for name, clips in (("generated", generated), ("reference", reference)):
        pitch = pitch_on_scale_share(clips, sample_rate, scale)
        report[f"{name}_voiced_share"] = pitch["voiced_share"]
        report[f"{name}_on_scale_share"] = pitch["on_scale_share"]
    report["frechet_distance"] = frechet_distance(
        audio_features(generated, sample_rate), audio_features(reference, sample_rate)
    )
    return report
