"""A synthetic music source: short monophonic melodies on a musical scale, one instrument per clip.

Why: an audio diffusion model needs data that ships with the package (no downloads) and that has structure a metric can
check. Every clip here is a melody whose pitches lie on a known scale (:func:`pitch_on_scale_share` in
:mod:`mmdiff.modalities.audio.metrics` then asks whether *generated* audio keeps to it), played by one of a few
timbres (the class label, so class-conditional models have something to learn).

A clip is a random walk in scale degrees (mostly steps, sometimes leaps, sometimes rests), note lengths of eighths,
quarters and halves at a random tempo, an ADSR envelope per note, and a peak normalised to 0.8. Timbres:

- ``sine``: a pure tone with a gentle vibrato (5.5 Hz, 15 cents),
- ``square``: band-limited square wave, the odd harmonics ``k f0 < sr / 2`` with amplitude ``1 / k`` (no aliasing),
- ``pluck``: Karplus-Strong plucked string (Karplus & Strong 1983) excited by a triangle "pluck" shape, tuned to fractional delays with a first-order
  allpass (Jaffe & Smith 1983) and run with :func:`scipy.signal.lfilter`,
- ``organ``: a few drawbar-like harmonics (1, 2, 3, 4, 6) with a slow attack.

Everything is vectorised per note in numpy: a 2 s clip at 16 kHz takes a few milliseconds.

Captions (issue 12, text conditioning): every item carries a ``caption`` naming a random subset of the clip's
attributes (:meth:`MusicSynth.attributes`: instrument, tempo class and BPM, register, scale, contour) in varied
phrasings (:func:`compose_caption`), each named attribute with its canonical word, all true of the clip. With the
recommended bands (``registers=REGISTERS, tempos=TEMPOS``) register and tempo are drawn per clip from named bands, far
enough apart to hear and to measure (:mod:`mmdiff.modalities.audio.attributes` estimates them back from the audio).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.signal import lfilter
from torch.utils.data import Dataset

from ..item_keys import clip_index, settings_hash

# Pitch classes of each scale as semitone offsets from C (C = 0, C# = 1, ..., B = 11). A scale is a set of pitch
# classes, so ``a_minor`` holds the same notes as ``c_major``; it is listed for readable configs.
SCALES: dict[str, tuple[int, ...]] = {
    "chromatic": tuple(range(12)),
    "c_major": (0, 2, 4, 5, 7, 9, 11),
    "a_minor": (9, 11, 0, 2, 4, 5, 7),
    "a_harmonic_minor": (9, 11, 0, 2, 4, 5, 8),
    "c_major_pentatonic": (0, 2, 4, 7, 9),
    "a_minor_pentatonic": (9, 0, 2, 4, 7),
    # The black keys: no pitch class in common with C major pentatonic (a handy "off-scale" melody for tests).
    "f_sharp_major_pentatonic": (6, 8, 10, 1, 3),
}

# Attack, decay (s), sustain level, release (s) of each instrument's ADSR envelope.
ENVELOPES: dict[str, tuple[float, float, float, float]] = {
    "sine": (0.02, 0.08, 0.8, 0.06),
    "square": (0.01, 0.10, 0.6, 0.05),
    "pluck": (0.002, 0.0, 1.0, 0.04),  # the string decays by itself; the envelope only damps it at note off
    "organ": (0.08, 0.05, 0.9, 0.10),
}

NOTE_BEATS = (0.5, 1.0, 2.0)  # eighths, quarters, halves
NOTE_BEAT_PROBS = (0.4, 0.45, 0.15)
STEPS = (-2, -1, 0, 1, 2)  # scale-degree moves of the random walk
STEP_PROBS = (0.15, 0.3, 0.1, 0.3, 0.15)
LEAPS = (-5, -4, -3, 3, 4, 5)
LEAP_PROB = 0.15
REST_PROB = 0.1
# With tempo bands (``tempos=``) the rhythm is steadier, so that a clip's tempo class is audible and measurable in 2 s:
# with the rhythm above, a 2 s clip holds only 1-4 notes and even the true note count tells slow from moderate from
# fast in only ~65% of clips; with mostly eighths, no halves and no rests the shortest inter-onset interval is the
# eighth note in almost every clip (0.375-0.5 s slow, 0.25-0.3 s moderate, 0.17-0.2 s fast: disjoint).
BANDED_NOTE_BEAT_PROBS = (0.7, 0.3, 0.0)
BANDED_REST_PROB = 0.0
PEAK = 0.8
TABLE_SIZE = 4096  # samples per period of the additive instruments' wavetables

# Recommended register bands (MIDI, inclusive) for captioned data: non-overlapping, their centres 16 semitones apart, so
# that "low" and "high" differ by more than two octaves and a pitch tracker tells them apart at a glance. The lowest
# note G2 (98 Hz) stays above ~90 Hz, where a 1024-point FFT at 16 kHz (15.6 Hz bins) and a 128-band mel filterbank
# still resolve the harmonics; the highest E6 (1319 Hz) leaves even the square wave's 5th harmonic below Nyquist at
# 16 kHz and stays below pyin's C7 ceiling in :mod:`mmdiff.modalities.audio.metrics`.
REGISTERS: dict[str, tuple[int, int]] = {"low": (43, 57), "middle": (60, 72), "high": (76, 88)}
# Recommended tempo bands (BPM): gaps of 20 and 30 BPM between classes, so that the note rate (about 0.95 BPM / 60
# notes per second with the note lengths below) differs by a factor of ~1.4 from class to class and ~2.3 from slow to
# fast; onset counting in :mod:`mmdiff.modalities.audio.attributes` separates them.
TEMPOS: dict[str, tuple[float, float]] = {"slow": (60.0, 80.0), "moderate": (100.0, 120.0), "fast": (150.0, 180.0)}
# Without bands, a clip's register and tempo words come from the clip itself against these fixed thresholds, placed
# between the recommended bands: register by duration-weighted median MIDI (< 59 low, >= 74 high, else middle),
# tempo by BPM (< 90 slow, >= 135 fast, else moderate). The words are then true of the clip whatever the ranges.
REGISTER_THRESHOLDS = (59.0, 74.0)
TEMPO_THRESHOLDS = (90.0, 135.0)
CONTOUR_SEMITONES = 3.0  # a contour is "rising"/"falling"/... when thirds of the clip differ by at least this much
CONTOURS = ("rising", "falling", "arching", "dipping", "wandering")


def midi_to_hz(midi) -> np.ndarray:
    """Equal-tempered frequency in Hz of MIDI note numbers (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def scale_pitch_classes(scale: str | Sequence[int]) -> tuple[int, ...]:
    """The pitch classes (0..11, C = 0) of a scale given by name (a key of :data:`SCALES`) or as offsets."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; known scales: {sorted(SCALES)}")
        return SCALES[scale]
    classes = tuple(int(c) % 12 for c in scale)
    if not classes:
        raise ValueError("scale: need at least one pitch class")
    return classes


def scale_midi(scale: str | Sequence[int], low_midi: int, high_midi: int) -> np.ndarray:
    """The MIDI numbers in ``[low_midi, high_midi]`` whose pitch class is in ``scale``, ascending. Shape (P,)."""
    if low_midi > high_midi:
        raise ValueError(f"note range: low_midi {low_midi} is above high_midi {high_midi}")
    classes = set(scale_pitch_classes(scale))
    midi = np.array([m for m in range(int(low_midi), int(high_midi) + 1) if m % 12 in classes], dtype=np.int64)
    if midi.size == 0:
        raise ValueError(f"scale {scale!r} has no pitch in MIDI {low_midi}..{high_midi}")
    return midi


def scale_frequencies(scale: str | Sequence[int], low_midi: int, high_midi: int) -> np.ndarray:
    """The allowed pitches in Hz of ``scale`` between MIDI ``low_midi`` and ``high_midi`` (inclusive). Shape (P,)."""
    return midi_to_hz(scale_midi(scale, low_midi, high_midi))


# ---------------------------------------------------------------------------------------------------------------
# Instruments: each renders a raw tone (n,) at frequency f0, before the ADSR envelope.


def _sine(f0: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Sine with vibrato: f(t) = f0 * 2^(depth * sin(2 pi rate t) / 1200), phase integrated in closed form."""
    t = np.arange(n) / sr  # (n,)
    rate, depth = 5.5, 15.0  # Hz, cents
    ratio = 2.0 ** (depth / 1200.0) - 1.0  # small-deviation approximation of the frequency swing
    phase0 = rng.uniform(0, 2 * np.pi)
    swing = np.cos(phase0) - np.cos(2 * np.pi * rate * t + phase0)
    phase = 2 * np.pi * f0 * (t + ratio * swing / (2 * np.pi * rate))
    return np.sin(phase)


def _additive(f0: float, n: int, sr: int, harmonics: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of ``weights[k] * sin(2 pi harmonics[k] f0 t)`` over the harmonics below Nyquist.

    Read from a one-period wavetable (:data:`TABLE_SIZE` points, linear interpolation): one ``np.interp`` per note
    instead of one ``np.sin`` per harmonic and sample. With at most ~40 harmonics in the table the interpolation error
    is below 1e-3 of full scale.
    """
    keep = harmonics * f0 < sr / 2
    grid, table = _wavetable(tuple(harmonics[keep].tolist()), tuple(weights[keep].tolist()))
    phase = (f0 / sr * np.arange(n)) % 1.0  # (n,) in periods
    return np.interp(phase, grid, table)


@functools.lru_cache(maxsize=256)
def _wavetable(harmonics: tuple[float, ...], weights: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One period of ``sum_k weights[k] sin(2 pi harmonics[k] x)`` on a closed grid of ``TABLE_SIZE + 1`` points.

    Cached: a scale has only a few pitches, so each table is built once per process.
    """
    grid = np.arange(TABLE_SIZE + 1) / TABLE_SIZE  # (S + 1,) closed, so that interp wraps smoothly
    table = np.asarray(weights) @ np.sin(2 * np.pi * np.asarray(harmonics)[:, None] * grid[None, :])  # (K,)@(K, S+1)
    return grid, table


def _square(f0: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited square wave: ``4 / pi * sum_k sin(2 pi k f0 t) / k`` over odd ``k`` with ``k f0 < sr / 2``."""
    k = np.arange(1, int(sr / 2 / f0) + 1, 2, dtype=np.float64)
    return _additive(f0, n, sr, k, 4 / np.pi / k)


def _organ(f0: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Organ: drawbar-like harmonics 1, 2, 3, 4, 6 with falling weights (the slow attack is in its envelope)."""
    return _additive(f0, n, sr, np.array([1.0, 2.0, 3.0, 4.0, 6.0]), np.array([1.0, 0.6, 0.35, 0.25, 0.12]))


def _pluck(f0: float, n: int, sr: int, rng: np.random.Generator, t60: float = 1.5) -> np.ndarray:
    """Karplus-Strong string (Karplus & Strong 1983) with allpass fine tuning (Jaffe & Smith 1983).

    The loop is ``y[t] = x[t] + g * avg(allpass(y))[t - L]``: the two-point average (half a sample of delay) damps
    the high harmonics, the allpass ``(C + z^-1) / (1 + C z^-1)`` adds the fractional delay ``D`` so that
    ``L + 0.5 + D = sr / f0`` exactly, and the loop gain ``g`` sets a decay of 60 dB in ``t60`` seconds.
    The whole loop is one IIR filter, run by :func:`scipy.signal.lfilter` on a burst of noise.
    """
    period = sr / f0
    delay = int(np.floor(period - 0.6))  # keeps the allpass delay D in [0.1, 1.1), where it is close to linear
    frac = period - 0.5 - delay
    c = (1 - frac) / (1 + frac)
    g = 10.0 ** (-3.0 / (f0 * t60))
    a = np.zeros(delay + 3)  # denominator: (1 + C z^-1) - g/2 (1 + z^-1)(C + z^-1) z^-L
    a[0], a[1] = 1.0, c
    a[delay:] -= 0.5 * g * np.array([c, 1 + c, 1.0])
    # Excitation: one period of a string plucked at a random point (a triangle, harmonics ~ 1 / k^2, so the
    # fundamental dominates) plus a little noise for the attack's colour.
    m = min(n, round(period))
    x = np.arange(m) / m
    where = rng.uniform(0.2, 0.4)
    shape = np.where(x < where, x / where, (1 - x) / (1 - where)) + 0.2 * rng.uniform(-1, 1, m)  # (m,)
    burst = np.zeros(n)
    burst[:m] = shape - shape.mean()
    return lfilter([1.0, c], a, burst)


INSTRUMENTS = {"sine": _sine, "square": _square, "pluck": _pluck, "organ": _organ}


def adsr(n_gate: int, n_total: int, sr: int, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """ADSR envelope (n_total,): rise over ``attack``, fall to ``sustain`` over ``decay``, hold until the gate closes
    at sample ``n_gate``, then fade to 0 over ``release``. Attack and decay shrink to fit notes shorter than them."""
    gate = n_gate / sr
    a = min(attack, 0.5 * gate)
    d = min(decay, gate - a)
    times = [0.0, a, a + d, gate, gate + release]
    levels = [0.0, 1.0, sustain, sustain, 0.0]
    return np.interp(np.arange(n_total) / sr, times, levels)


# ---------------------------------------------------------------------------------------------------------------


class MusicSynth(Dataset):
    """``size`` synthetic melodies of ``duration`` seconds at ``sample_rate``, rendered on the fly.

    Clip ``i`` depends only on ``(seed, i)``: its instrument is ``instruments[i % len(instruments)]`` (balanced
    classes) and its tempo, melody and noise come from ``numpy.random.default_rng((seed, i))``. Keys are an index or
    the trainer's ``(index, item_seed)`` pair; the item seed is ignored on purpose, so that clip ``i`` is always the
    same clip and :meth:`notes` describes exactly what ``self[i]`` plays (the data set is a fixed finite set, like
    :class:`~mmdiff.modalities.points.data.MixturePoints`).

    Items are ``{"audio": (1, T) float32 with T = round(duration * sample_rate), "label": () int64 instrument,
    "caption": str}``. The caption's phrasing comes from the item seed when the key is ``(index, item_seed)`` (each
    epoch reads other words for the same clip), else from ``(seed, index)``; the audio never depends on it.

    ``registers`` / ``tempos``: optional named bands, ``{"low": (lo_midi, hi_midi), ...}`` / ``{"slow": (lo_bpm,
    hi_bpm), ...}`` (recommended: :data:`REGISTERS`, :data:`TEMPOS`). Clip ``i`` then takes its register and tempo
    class from a balanced design (:meth:`_bands`), its melody stays inside the register's notes of the scale, its BPM
    inside the tempo band, and (with tempo bands) its rhythm is steadier (:data:`BANDED_NOTE_BEAT_PROBS`). Without
    bands, ``note_range`` and ``tempo_range`` hold for all clips as before and the caption's words are measured on
    the clip (:data:`REGISTER_THRESHOLDS`, :data:`TEMPO_THRESHOLDS`).
    """

    reads_files = False  # items are made in memory: trainer.num_workers=auto adds workers only on a GPU

    #: Bump when the rendering code changes what a clip sounds like: item keys (and the latents cached by them) of
    #: earlier versions are then not reused.
    render_version = 1

    def __init__(
        self,
        size: int = 2048,
        sample_rate: int = 16000,
        duration: float = 2.0,
        scale: str | Sequence[int] = "c_major_pentatonic",
        instruments: Sequence[str] = ("sine", "square", "pluck", "organ"),
        tempo_range: tuple[float, float] = (90, 160),
        note_range: tuple[int, int] = (55, 79),
        seed: int = 0,
        registers: Mapping[str, Sequence[int]] | None = None,
        tempos: Mapping[str, Sequence[float]] | None = None,
    ):
        if size < 1:
            raise ValueError(f"size: need at least one clip, got {size}")
        if sample_rate <= 0 or duration <= 0:
            raise ValueError(f"sample_rate and duration must be positive, got {sample_rate} Hz and {duration} s")
        unknown = [name for name in instruments if name not in INSTRUMENTS]
        if unknown or not instruments:
            raise ValueError(
                f"unknown instrument(s) {unknown or '(none given)'}; known instruments: {list(INSTRUMENTS)}"
            )
        if not 0 < tempo_range[0] <= tempo_range[1]:
            raise ValueError(f"tempo_range: need 0 < low <= high BPM, got {tuple(tempo_range)}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.size = int(size)
        self.sample_rate = int(sample_rate)
        self.duration = float(duration)
        self.num_samples = round(self.duration * self.sample_rate)
        self.scale = scale if isinstance(scale, str) else scale_pitch_classes(scale)  # a name or pitch classes
        self.instruments = tuple(instruments)
        self.tempo_range = (float(tempo_range[0]), float(tempo_range[1]))
        self.note_range = (int(note_range[0]), int(note_range[1]))
        self.seed = int(seed)
        self.pitches = scale_midi(scale, *self.note_range)  # (P,) allowed MIDI notes, ascending
        nyquist_midi = 69 + 12 * np.log2(self.sample_rate / 2 / 440)
        if self.pitches.max() >= nyquist_midi:
            raise ValueError(f"note_range {self.note_range}: top note is above Nyquist at {self.sample_rate} Hz")
        self.registers = _bands("registers", registers, int)  # {name: (lo_midi, hi_midi)} or None
        self.tempos = _bands("tempos", tempos, float)  # {name: (lo_bpm, hi_bpm)} or None
        self._register_pitches: dict[str, np.ndarray] = {}  # (P_r,) allowed MIDI notes of each register band
        for name, (lo, hi) in (self.registers or {}).items():
            if lo > hi or scale_midi(scale, lo, hi).max() >= nyquist_midi:
                raise ValueError(
                    f"registers.{name}: need low <= high MIDI below Nyquist at {sample_rate} Hz, got {lo, hi}"
                )
            self._register_pitches[name] = scale_midi(scale, lo, hi)
        for name, (lo, hi) in (self.tempos or {}).items():
            if not 0 < lo <= hi:
                raise ValueError(f"tempos.{name}: need 0 < low <= high BPM, got {lo, hi}")

    @property
    def num_classes(self) -> int:
        return len(self.instruments)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.instruments

    def __len__(self) -> int:
        return self.size

    def summary(self) -> str:
        """One line describing the data set."""
        lo, hi = self.note_range
        line = (
            f"MusicSynth: {self.size} clips of {self.duration:g} s at {self.sample_rate} Hz, scale {self.scale} "
            f"({len(self.pitches)} pitches in MIDI {lo}..{hi}), instruments {'/'.join(self.instruments)}, "
            f"tempo {self.tempo_range[0]:g}-{self.tempo_range[1]:g} BPM, seed {self.seed}"
        )
        if self.registers:
            line += ", registers " + ", ".join(f"{k} MIDI {a}-{b}" for k, (a, b) in self.registers.items())
        if self.tempos:
            line += ", tempos " + ", ".join(f"{k} {a:g}-{b:g} BPM" for k, (a, b) in self.tempos.items())
        return line

    def clip_index(self, key) -> int:
        """The clip index in ``[0, size)`` that ``key`` (an index or ``(index, item_seed)``) names."""
        return clip_index(key, self.size)

    def _rngs(self, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        """Two independent streams for clip ``index``: one for the score, one for rendering noise."""
        melody, render = np.random.SeedSequence((self.seed, index)).spawn(2)
        return np.random.default_rng(melody), np.random.default_rng(render)

    def _caption_rng(self, index: int, item_seed: int | None = None) -> np.random.Generator:
        """The phrasing stream: from ``(seed, index, item_seed)`` when the trainer passes an item seed (each epoch
        phrases the clip anew), else a third child of ``(seed, index)`` (independent of the score and render streams,
        which are the first two children, so captions never change the audio)."""
        if item_seed is None:
            return np.random.default_rng(np.random.SeedSequence((self.seed, index), spawn_key=(2,)))
        return np.random.default_rng((self.seed, index, int(item_seed) % 2**64, 0xCA9))

    def _bands(self, index: int) -> tuple[str | None, str | None]:
        """Register and tempo class of clip ``index`` when bands are given (else None): a balanced factorial design,
        crossed with the instrument: register ``(i // n_instruments) % n_registers``, tempo
        ``(i // (n_instruments * n_registers)) % n_tempos``, so every (instrument, register, tempo) combination occurs
        equally often in each block of ``n_instruments * n_registers * n_tempos`` consecutive clips."""
        n_inst, register, tempo = len(self.instruments), None, None
        n_reg = len(self.registers) if self.registers else 1
        if self.registers:
            register = list(self.registers)[(index // n_inst) % n_reg]
        if self.tempos:
            tempo = list(self.tempos)[(index // (n_inst * n_reg)) % len(self.tempos)]
        return register, tempo

    def notes(self, index: int) -> list[tuple[float, float, int, float]]:
        """The score of clip ``index``: ``[(onset_s, duration_s, midi, frequency_hz), ...]`` in time order.

        Onsets and durations are whole samples; the last note is cut at the end of the clip. Rests are gaps.
        """
        return self._play(self.clip_index(index))[0]

    def _play(self, index: int) -> tuple[list[tuple[float, float, int, float]], float, np.random.Generator]:
        """``(notes, bpm, render_rng)`` of clip ``index``: the score drawn from the first stream."""
        rng, render_rng = self._rngs(index)
        register, tempo = self._bands(index)
        pitches = self._register_pitches[register] if register else self.pitches
        tempo_range = self.tempos[tempo] if tempo else self.tempo_range
        notes, bpm = self._score(rng, pitches, tempo_range)
        return notes, bpm, render_rng

    def _score(
        self, rng: np.random.Generator, pitches: np.ndarray, tempo_range: tuple[float, float]
    ) -> tuple[list[tuple[float, float, int, float]], float]:
        sr, n_clip = self.sample_rate, self.num_samples
        bpm = float(rng.uniform(*tempo_range))
        beat = 60.0 / bpm  # seconds per quarter note
        beat_probs, rest_prob = (
            (BANDED_NOTE_BEAT_PROBS, BANDED_REST_PROB) if self.tempos else (NOTE_BEAT_PROBS, REST_PROB)
        )
        n_pitch = len(pitches)
        pos = int(rng.integers(n_pitch // 4, max(n_pitch // 4 + 1, 3 * n_pitch // 4)))
        notes, start = [], 0
        while start < n_clip:
            length = round(rng.choice(NOTE_BEATS, p=beat_probs) * beat * sr)
            if notes and rng.random() < rest_prob:
                start += length
                continue
            length = min(length, n_clip - start)
            midi = int(pitches[pos])
            notes.append((start / sr, length / sr, midi, float(midi_to_hz(midi))))
            step = rng.choice(LEAPS) if rng.random() < LEAP_PROB else rng.choice(STEPS, p=STEP_PROBS)
            pos = _reflect(pos + int(step), n_pitch)
            start += length
        return notes, bpm

    def attributes(self, index: int) -> dict:
        """What clip ``index`` is, in words and numbers, all true of its audio: ``instrument``, ``tempo``
        (slow/moderate/fast: its band's name, or :data:`TEMPO_THRESHOLDS` on ``bpm``), ``bpm`` (float), ``register``
        (low/middle/high: its band's name, or :data:`REGISTER_THRESHOLDS` on ``median_midi``), ``scale`` (readable,
        "C major pentatonic"), ``contour`` (:func:`melodic_contour` of the score) and ``median_midi`` (the
        duration-weighted median MIDI note of the score)."""
        index = self.clip_index(index)
        notes, bpm, _ = self._play(index)
        register, tempo = self._bands(index)
        midi = np.array([n[2] for n in notes], dtype=np.float64)  # (N,)
        weights = np.array([n[1] for n in notes])  # (N,) seconds sounding
        median = _weighted_median(midi, weights)
        return {
            "instrument": self.instruments[index % len(self.instruments)],
            "tempo": tempo or _word(bpm, TEMPO_THRESHOLDS, ("slow", "moderate", "fast")),
            "bpm": bpm,
            "register": register or _word(median, REGISTER_THRESHOLDS, ("low", "middle", "high")),
            "scale": scale_name(self.scale),
            "contour": melodic_contour(notes, self.duration),
            "median_midi": median,
        }

    def caption(self, index: int, rng: np.random.Generator | None = None) -> str:
        """A caption of clip ``index``, phrased by ``rng`` (default: the fixed phrasing stream of ``(seed, index)``).
        See :func:`compose_caption`."""
        index = self.clip_index(index)
        return compose_caption(self.attributes(index), rng if rng is not None else self._caption_rng(index))

    def render(self, index: int) -> np.ndarray:
        """The waveform of clip ``index`` as float32 numpy, shape (T,), peak :data:`PEAK`."""
        index = self.clip_index(index)
        notes, _, render_rng = self._play(index)
        name = self.instruments[index % len(self.instruments)]
        tone, envelope = INSTRUMENTS[name], ENVELOPES[name]
        sr, out = self.sample_rate, np.zeros(self.num_samples)  # (T,)
        for onset, length, _, freq in notes:
            start, n_gate = round(onset * sr), round(length * sr)
            n_total = min(n_gate + round(envelope[3] * sr), self.num_samples - start)  # release tail, cut at clip end
            velocity = render_rng.uniform(0.7, 1.0)
            note = tone(freq, n_total, sr, render_rng) * adsr(n_gate, n_total, sr, *envelope)
            out[start : start + n_total] += velocity * note
        peak = np.abs(out).max()
        return (out * (PEAK / peak if peak > 0 else 0.0)).astype(np.float32)

    def __getitem__(self, key) -> dict:
        index = self.clip_index(key)
        audio = torch.from_numpy(self.render(index))[None]  # (1, T)
        label = torch.tensor(index % len(self.instruments), dtype=torch.int64)
        item_seed = key[1] if isinstance(key, tuple) and len(key) > 1 else None
        caption = compose_caption(self.attributes(index), self._caption_rng(index, item_seed))
        return {"audio": audio, "label": label, "caption": caption}

    def item_key(self, index: int, item_seed: int | None = None) -> str:
        """A string naming exactly the audio of clip ``index`` (:mod:`mmdiff.modalities.item_keys`): the class, a
        hash of every setting the waveform depends on and the index. The item seed only phrases the caption, so it is
        not part of the key; ``size`` is not either (clip ``i`` is the same clip in a larger data set)."""
        settings = {
            "version": self.render_version,
            "sample_rate": self.sample_rate,
            "num_samples": self.num_samples,
            "scale": self.scale,
            "instruments": self.instruments,
            "tempo_range": self.tempo_range,
            "note_range": self.note_range,
            "seed": self.seed,
            "registers": self.registers,
            "tempos": self.tempos,
        }
        return f"MusicSynth:{settings_hash(settings)}:{self.clip_index(index)}"


# ---------------------------------------------------------------------------------------------------------------
# Attributes and captions


def _bands(what: str, bands, cast) -> dict | None:
    """``{name: (lo, hi)}`` from a mapping (a dict or Hydra's DictConfig of 2-item lists), or None."""
    if bands is None:
        return None
    if not isinstance(bands, Mapping) or not bands:
        raise ValueError(f"{what}: need a mapping of class name to (low, high), e.g. {REGISTERS}, got {bands!r}")
    out = {}
    for name, band in bands.items():
        band = list(band) if isinstance(band, Sequence | np.ndarray) or hasattr(band, "__iter__") else [band]
        if len(band) != 2:
            raise ValueError(f"{what}.{name}: need a (low, high) pair, got {band!r}")
        out[str(name)] = (cast(band[0]), cast(band[1]))
    return out


def _word(value: float, thresholds: tuple[float, float], words: tuple[str, str, str]) -> str:
    """``words[0]`` below ``thresholds[0]``, ``words[2]`` at or above ``thresholds[1]``, else ``words[1]``."""
    return words[0] if value < thresholds[0] else words[2] if value >= thresholds[1] else words[1]


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below which half of the total weight lies (values (N,), weights (N,) >= 0)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def scale_name(scale: str | Sequence[int]) -> str:
    """A scale written readably: ``"c_major_pentatonic"`` -> ``"C major pentatonic"``, ``"f_sharp_major_pentatonic"``
    -> ``"F sharp major pentatonic"``, ``"chromatic"`` -> ``"chromatic"``; pitch classes -> ``"C D E G A"``."""
    if isinstance(scale, str):
        words = scale.split("_")
        if len(words[0]) == 1:
            words[0] = words[0].upper()
        return " ".join(words)
    names = ("C", "C sharp", "D", "E flat", "E", "F", "F sharp", "G", "A flat", "A", "B flat", "B")
    return " ".join(names[c] for c in scale_pitch_classes(scale))


def melodic_contour(notes: Sequence[tuple[float, float, int, float]], duration: float) -> str:
    """The overall shape of a melody, one of :data:`CONTOURS`, from its score ``[(onset, length, midi, hz), ...]``.

    The clip is cut into thirds of ``duration``; each third's pitch is the mean MIDI note weighted by how long each
    note sounds in it. With ``first``, ``mid``, ``last`` these means and ``d`` = :data:`CONTOUR_SEMITONES`:
    ``rising`` if ``last - first >= d``, ``falling`` if ``first - last >= d``, else ``arching`` if ``mid`` is ``d``
    above both ends, ``dipping`` if ``d`` below both, else ``wandering``. Measured on what sounds, so a pitch tracker
    on the audio agrees (tests check it with pyin).
    """
    means = []
    for third in range(3):
        lo, hi = third * duration / 3, (third + 1) * duration / 3
        overlap = np.array([max(0.0, min(hi, t + n) - max(lo, t)) for t, n, _, _ in notes])  # (N,) seconds
        midi = np.array([m for _, _, m, _ in notes], dtype=np.float64)
        means.append(float(overlap @ midi / overlap.sum()) if overlap.sum() > 0 else np.nan)
    first, mid, last = means
    d = CONTOUR_SEMITONES
    if np.isnan(first) or np.isnan(last):
        return "wandering"
    if last - first >= d:
        return "rising"
    if first - last >= d:
        return "falling"
    if not np.isnan(mid) and mid - max(first, last) >= d:
        return "arching"
    if not np.isnan(mid) and min(first, last) - mid >= d:
        return "dipping"
    return "wandering"


# Phrasings. Every phrase of an attribute holds its canonical word (the key), so a caption's words are parseable by
# mmdiff.modalities.audio.attributes.parse_prompt and always true of the clip; synonyms ride along ("quick, fast").
INSTRUMENT_PHRASES: dict[str, tuple[str, ...]] = {
    "sine": ("sine", "sine wave", "pure sine tone", "soft sine"),
    "square": ("square", "square wave", "chiptune square", "square-wave lead"),
    "pluck": ("pluck", "plucked string", "plucked", "plucked-string"),
    "organ": ("organ", "organ", "drawbar organ", "electric organ"),
}
TEMPO_PHRASES: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "slow, unhurried", "slow, gentle", "slow and calm"),
    "moderate": ("moderate", "moderate, walking-pace", "medium, moderate", "moderate and steady"),
    "fast": ("fast", "quick, fast", "fast, up-tempo", "lively, fast"),
}
# The instrument as a noun, for "played on a ..." / "by a ..." (each holds the canonical word too).
INSTRUMENT_NOUNS: dict[str, tuple[str, ...]] = {
    "sine": ("sine wave", "pure sine tone"),
    "square": ("square wave", "chiptune square"),
    "pluck": ("plucked string", "plucked-string instrument"),
    "organ": ("organ", "drawbar organ", "electric organ"),
}
REGISTER_PHRASES: dict[str, tuple[str, ...]] = {
    "low": ("low", "low-pitched", "deep, low", "low-register"),
    "middle": ("middle-register", "mid-range, middle-register", "middle-pitched"),
    "high": ("high", "high-pitched", "bright, high", "high-register"),
}
NOUNS = ("melody", "tune", "phrase", "melodic line", "riff")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def compose_caption(attributes: dict, rng: np.random.Generator) -> str:
    """A caption naming a random subset of ``attributes`` (as returned by :meth:`MusicSynth.attributes`), phrased by
    ``rng``: which attributes (all in a quarter of captions, the instrument alone in a tenth, else each with its own
    probability, at least one of instrument/tempo/register), before or after the noun, in which order, with which
    synonyms, and whether the BPM is given ("at 152 BPM"). Every named attribute carries its canonical word.
    Examples: "a fast organ melody", "a low-pitched tune played on a plucked string, with a rising contour".
    """
    draw = rng.random()
    if draw < 0.25:
        named = {"instrument", "tempo", "register", "scale", "contour"}
    elif draw < 0.35:
        named = {"instrument"}
    else:
        chances = {"instrument": 0.7, "tempo": 0.5, "register": 0.5, "scale": 0.2, "contour": 0.25}
        named = {key for key, p in chances.items() if rng.random() < p}
        if not named & {"instrument", "tempo", "register"}:
            named.add(("instrument", "tempo", "register")[int(rng.integers(3))])
    before: list[str] = []  # adjectives before the noun
    after: list[str] = []  # phrases after the noun
    if "tempo" in named:
        word = _pick(rng, TEMPO_PHRASES[attributes["tempo"]])
        bpm = f" at {round(attributes['bpm'])} BPM" if rng.random() < 0.3 else ""
        if rng.random() < 0.6:
            before.append(word)
            after.append(bpm.strip()) if bpm else None
        else:
            after.append(_pick(rng, (f"at a {attributes['tempo']} tempo{bpm}", f"played at a {word} pace{bpm}")))
    if "register" in named:
        register = attributes["register"]
        if rng.random() < 0.5:
            before.append(_pick(rng, REGISTER_PHRASES[register]))
        else:
            after.append(
                _pick(rng, (f"in the {register} register", f"in a {register} register", f"{register} in pitch"))
            )
    if "contour" in named:
        contour = attributes["contour"]
        if rng.random() < 0.5 and contour != "wandering":
            before.append(contour)
        else:
            after.append(_pick(rng, (f"with a {contour} contour", f"with a {contour} shape")))
    if "scale" in named:
        scale = attributes["scale"]
        after.append(_pick(rng, (f"in {scale}", f"on the {scale} scale", f"using the {scale} scale")))
    order = rng.permutation(len(before))
    before = [before[i] for i in order]
    if "instrument" in named:
        if rng.random() < 0.6:
            before.append(
                _pick(rng, INSTRUMENT_PHRASES[attributes["instrument"]])
            )  # nearest the noun: "a fast organ melody"
        else:
            phrase = _pick(rng, INSTRUMENT_NOUNS[attributes["instrument"]])
            after.append(
                _pick(rng, (f"played on {_article(phrase)}", f"on {_article(phrase)}", f"by {_article(phrase)}"))
            )
    after = [after[i] for i in rng.permutation(len(after))]
    # Adjectives joined by commas ("a slow, low-pitched, rising organ tune"); the instrument (last) sits by the noun.
    instrument = [before.pop()] if "instrument" in named and before and len(before) > len(order) else []
    noun = " ".join([", ".join(before)] * bool(before) + instrument + [_pick(rng, NOUNS)])
    text = _article(noun)
    if after:
        text += " " + after[0] + "".join(("," if rng.random() < 0.5 else " and") + " " + a for a in after[1:])
    return text


def _reflect(pos: int, n: int) -> int:
    """Fold a scale-degree position back into ``[0, n)`` at both ends (the walk bounces off the range)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    pos %= period
    return pos if pos < n else period - pos
