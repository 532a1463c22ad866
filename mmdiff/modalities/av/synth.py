"""A synthetic audio-video source: the moving shapes of :mod:`mmdiff.modalities.video.synth`, with their soundtrack.

Why: a joint audio-video model needs data that ships with the package and whose audio-video *sync* a metric can check
without pretrained networks. Here every sound has a visible cause: an object knocks each time it bounces off a wall
(every reversal of one axis of its velocity), so the times of audio onsets can be compared with the times of velocity
reversals seen in the frames (:mod:`mmdiff.modalities.av.sync`).

The pixels are exactly those of :class:`~mmdiff.modalities.video.MovingShapes` with the same settings (composition:
this class holds one and asks it for frames, trajectories, attributes and captions). The sound of a bounce is a
struck-bar tone, like a marimba or a woodblock:

- **when**: at the exact bounce time of the closed-form motion ``reflect(p0 + v t)`` per axis (``t`` in frames, the
  time ``t / fps`` seconds; frame ``i`` covers ``[i / fps, (i + 1) / fps)``), to the sample and between samples (the
  tone's phase starts at the bounce time, not at the next sample); bounces in ``0 < t < num_frames`` sound;
- **pitch**: set by the shape (:data:`PITCHES`: circle E4, square B4, triangle F#5, a fifth apart), bent down by at
  most ``size_bend / 2`` semitones for the largest objects of ``radius_range`` and up as much for the smallest;
- **loudness**: the amplitude is ``level * |v_n| / v_max``, proportional to the velocity component normal to the wall
  (an impact's loudness grows with the impact speed), ``v_max`` the top of ``speed_range``;
- **timbre**: a fundamental and the partial two octaves up (:data:`PARTIALS`; a marimba bar is tuned so that its
  first overtone is at 4x the fundamental, and it dies faster), under a raised-cosine attack of ``attack`` s and an
  exponential decay with time constant ``decay`` s;
- **stereo** (``channels=2``): constant-power panning (left gain ``cos(pi p / 2)``, right ``sin(pi p / 2)``) by the
  object's horizontal position ``p = x / W`` at the bounce.

Clips are not normalised one by one (that would undo loudness by speed across clips): a single knock peaks at
``level`` at most, and only a clip whose overlapping knocks add up past 0.99 is scaled down to a peak of 0.99, so
``|audio| <= 1`` always. Without a bounce a clip is exact digital silence (zeros, no noise floor).

The defaults are chosen for the sync metric at 16x16 and 8 fps: one object, 0.4-1 pixel per frame, radius 2.4-3.5
pixels, which gives about 1.4 bounces per 2-s clip, each a clearly visible velocity reversal (docs/audio_video.md
lists the measured rates and the chance level of the sync measure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..item_keys import settings_hash
from ..video.synth import NUMBER_WORDS, SHAPES, MovingShapes, reflect

# Fundamental frequency (Hz) of each shape's knock: E4, B4, F#5 (equal temperament, A4 = 440 Hz), a fifth apart, so
# the three shapes are told apart by ear and by a spectral peak even after the size bend of +-1 semitone.
PITCHES: dict[str, float] = {"circle": 329.63, "square": 493.88, "triangle": 739.99}
# Partials of a knock: (frequency ratio, amplitude, decay factor). A marimba bar's first overtone is tuned to 4x the
# fundamental and decays several times faster (Rossing, "The Science of Sound", ch. 13). Amplitudes sum to 1, so one
# knock peaks at its amplitude at most. Partials at or above Nyquist are left out (no aliasing).
PARTIALS: tuple[tuple[float, float, float], ...] = ((1.0, 0.75, 1.0), (4.0, 0.25, 0.3))
TAIL = 10.0  # a knock is rendered for TAIL decay time constants (then below exp(-10), 45 millionths of its peak)
LIMIT = 0.99  # a clip whose knocks add up past this peak is scaled down to it
_SOUND_CAPTION_STREAM = 0x50_0D_CA7  # the random stream of the sound phrase, apart from MovingShapes' phrasing


class SoundingShapes(Dataset):
    """``size`` clips of moving shapes with a knock at every bounce off a wall, rendered on the fly.

    Clip ``i`` depends only on ``(seed, i)`` (keys are an index or the trainer's ``(index, item_seed)``; the item seed
    only phrases the caption), exactly like :class:`~mmdiff.modalities.video.MovingShapes`, whose frames it shows.

    Args:
        size, num_frames, resolution, shapes, num_objects, speed_range, radius_range, seed, colours: as for
            :class:`~mmdiff.modalities.video.MovingShapes` (speeds and radii in fractions of the shorter frame side,
            speeds per frame); the defaults here suit 16x16 at 8 fps (see the module docstring).
        fps: frames per second: frame ``i`` covers ``[i / fps, (i + 1) / fps)``.
        sample_rate: audio samples per second (a whole number of Hz).
        channels: 1 (mono) or 2 (stereo, panned by the object's x at each bounce).
        pitches: Hz of each shape's knock, as a mapping ``{shape: Hz}`` or a sequence aligned with ``shapes``;
            ``None``: :data:`PITCHES`.
        decay: time constant (s) of the knock's exponential decay.
        attack: length (s) of its raised-cosine attack (0: an instant onset).
        size_bend: pitch range (semitones) over ``radius_range``: larger objects sound lower; 0 turns it off.
        level: peak amplitude of a knock at the top speed, in (0, 1].

    Items are ``{"video": (3, F, H, W) float32 in [0, 1], "audio": (channels, S) float32 in [-1, 1] with
    S = round(F / fps * sample_rate), "label": () int64 shape index, "caption": str}``.
    """

    reads_files = False  # items are made in memory: trainer.num_workers=auto adds workers only on a GPU

    #: Bump when the sound code changes what a clip sounds like: item keys (and latents cached by them) change.
    sound_version = 1

    def __init__(
        self,
        size: int = 4096,
        num_frames: int = 16,
        resolution: tuple[int, int] | int = (16, 16),
        fps: float = 8.0,
        sample_rate: int = 16000,
        channels: int = 1,
        shapes: Sequence[str] = SHAPES,
        num_objects: tuple[int, int] = (1, 1),
        speed_range: tuple[float, float] = (0.025, 0.0625),
        radius_range: tuple[float, float] = (0.15, 0.22),
        seed: int = 0,
        colours: Sequence[str] | None = None,
        pitches: Mapping[str, float] | Sequence[float] | None = None,
        decay: float = 0.12,
        attack: float = 0.003,
        size_bend: float = 2.0,
        level: float = 0.7,
    ):
        self.moving_shapes = MovingShapes(
            size=size,
            num_frames=num_frames,
            resolution=resolution,
            shapes=shapes,
            num_objects=num_objects,
            speed_range=speed_range,
            radius_range=radius_range,
            seed=seed,
            colours=colours,
        )  # validates the video settings
        if isinstance(fps, bool) or not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps: need a positive number of frames per second, got {fps!r}")
        if isinstance(sample_rate, bool) or not (
            isinstance(sample_rate, int | float) and sample_rate > 0 and int(sample_rate) == sample_rate
        ):
            raise ValueError(f"sample_rate: need a positive whole number of Hz, got {sample_rate!r}")
        if channels not in (1, 2) or isinstance(channels, bool):
            raise ValueError(f"channels: need 1 (mono) or 2 (stereo), got {channels!r}")
        if not (isinstance(decay, int | float) and 0 < decay <= 10):
            raise ValueError(f"decay: need a time constant in (0, 10] seconds, got {decay!r}")
        if not (isinstance(attack, int | float) and 0 <= attack <= 0.1):
            raise ValueError(f"attack: need an attack time in [0, 0.1] seconds, got {attack!r}")
        if not (isinstance(size_bend, int | float) and 0 <= size_bend <= 12):
            raise ValueError(f"size_bend: need a pitch range in [0, 12] semitones, got {size_bend!r}")
        if not (isinstance(level, int | float) and 0 < level <= 1):
            raise ValueError(f"level: need a peak amplitude in (0, 1], got {level!r}")
        ms = self.moving_shapes
        self.size, self.num_frames, self.resolution = ms.size, ms.num_frames, ms.resolution
        self.shapes, self.seed = ms.shapes, ms.seed
        self.fps = float(fps)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.num_samples = round(self.num_frames / self.fps * self.sample_rate)  # S: the clip's span, sample-aligned
        self.duration = self.num_frames / self.fps  # seconds
        self.pitches = _pitches(pitches, self.shapes, self.sample_rate)
        self.decay, self.attack = float(decay), float(attack)
        self.size_bend, self.level = float(size_bend), float(level)

    @property
    def num_classes(self) -> int:
        return len(self.shapes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.shapes

    def __len__(self) -> int:
        return self.size

    def summary(self) -> str:
        """One line describing the data set."""
        ms = self.moving_shapes
        h, w = self.resolution
        side = min(h, w)
        lo, hi = (s * side for s in ms.speed_range)
        pitches = "/".join(f"{self.pitches[name]:.0f}" for name in self.shapes)
        return (
            f"SoundingShapes: {self.size} clips of {self.num_frames} frames at {h}x{w}, {self.fps:g} fps "
            f"({self.duration:g} s), {self.sample_rate} Hz {'stereo' if self.channels == 2 else 'mono'}, shapes "
            f"{'/'.join(self.shapes)} knocking at {pitches} Hz, {ms.num_objects[0]}-{ms.num_objects[1]} objects, "
            f"speed {lo:.2g}-{hi:.2g} px/frame, decay {self.decay:g} s, seed {self.seed}"
        )

    def bounces(self, index: int) -> list[dict[str, Any]]:
        """Every bounce of clip ``index`` off a wall with ``0 < t < num_frames`` (t in frames), sorted by time.

        Each is a dict: ``time`` (s), ``frame`` (t in frames, fractional), ``object`` (index in drawing order),
        ``axis`` (``"x"`` or ``"y"``, the axis whose velocity reverses), ``wall`` (``"left"``, ``"right"``, ``"top"``,
        ``"bottom"``), ``speed`` (the normal velocity component in pixels per frame), ``position`` ((y, x) pixels of
        the centre at the bounce), ``pitch`` (Hz) and ``amplitude`` (the knock's peak before any clip limiting).
        The ground truth of the sync metric; a bounce after the last frame's start (``t > num_frames - 1``) is heard
        but not seen as a reversal.
        """
        return self._bounces(self.moving_shapes.trajectories(index))

    def _bounces(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        h, w = self.resolution
        side = min(h, w)
        top_speed = self.moving_shapes.speed_range[1] * side  # px per frame
        lo_r, hi_r = self.moving_shapes.radius_range
        found = []
        for number, obj in enumerate(objects):
            hy, hx = obj["half_extent"]
            low, high = np.array([hy, hx]), np.array([h - hy, w - hx])  # (2,) the centre's box (y, x)
            start = np.asarray(obj["positions"][0], dtype=np.float64)  # (2,) = the free start: it lies in the box
            velocity = np.asarray(obj["velocity"], dtype=np.float64)  # (2,) px per frame
            # Pitch: the shape's, bent down for larger objects (u = 0 smallest .. 1 largest of radius_range).
            u = (obj["radius"] / side - lo_r) / (hi_r - lo_r) if hi_r > lo_r else 0.5
            pitch = self.pitches[obj["shape"]] * 2.0 ** (-self.size_bend * (u - 0.5) / 12)
            for axis in (0, 1):
                span, v = high[axis] - low[axis], velocity[axis]
                if span <= 0 or v == 0:
                    continue
                # reflect() folds u = (p - low) / span with period 2: the velocity reverses where u is an integer n
                # (n even: the low wall, odd: the high wall), at t = (n - u0) / rate frames.
                u0, rate = (start[axis] - low[axis]) / span, v / span
                end = u0 + rate * self.num_frames
                crossings = (
                    np.arange(math.floor(u0) + 1, end) if rate > 0 else np.arange(math.ceil(u0) - 1, end, -1)
                ).astype(np.int64)  # (K,) integers strictly between u0 and end
                for n in crossings:
                    t = float((n - u0) / rate)
                    position = [
                        float(reflect(np.array([start[k] + velocity[k] * t]), low[k], high[k])[0]) for k in (0, 1)
                    ]
                    found.append(
                        {
                            "time": t / self.fps,
                            "frame": t,
                            "object": number,
                            "axis": "yx"[axis],
                            "wall": (("top", "bottom"), ("left", "right"))[axis][int(n) % 2],
                            "speed": abs(float(v)),
                            "position": tuple(position),
                            "pitch": float(pitch),
                            "amplitude": self.level * min(abs(float(v)) / top_speed, 1.0) if top_speed > 0 else 0.0,
                        }
                    )
        found.sort(key=lambda b: (b["frame"], b["object"], b["axis"]))
        return found

    def render_audio(self, index: int) -> np.ndarray:
        """The soundtrack of clip ``index``: float32 numpy (channels, S), values in [-1, 1] (see the module doc)."""
        return self._render_audio(self.bounces(index))

    def _render_audio(self, bounces: list[dict[str, Any]]) -> np.ndarray:
        sr, total = self.sample_rate, self.num_samples
        audio = np.zeros((self.channels, total), dtype=np.float64)  # (C, S)
        if not bounces:
            return audio.astype(np.float32)
        if self.channels == 2:
            pan = np.clip([b["position"][1] / self.resolution[1] for b in bounces], 0.0, 1.0)  # (B,) 0 left, 1 right
            gains = np.stack([np.cos(np.pi / 2 * pan), np.sin(np.pi / 2 * pan)], axis=1)  # (B, 2) constant power
        else:
            gains = np.ones((len(bounces), 1))  # (B, 1)
        for bounce, gain in zip(bounces, gains):  # a few knocks per clip: each over its own span, vectorised
            first = math.ceil(bounce["time"] * sr)  # the first sample at or after the bounce
            # offset in [0, 1 / sr): the tone's phase starts at the bounce, between samples, not at a sample
            offset = first / sr - bounce["time"]
            tone = self._knock(bounce["pitch"], offset, total - first) * bounce["amplitude"]  # (L,)
            audio[:, first : first + len(tone)] += gain[:, None] * tone
        peak = float(np.abs(audio).max())
        if peak > LIMIT:  # only when overlapping knocks add up past the limit: never clip
            audio *= LIMIT / peak
        return audio.astype(np.float32)

    def _knock(self, pitch: float, offset: float, room: int) -> np.ndarray:
        """One knock of unit peak amplitude at most, (L,) float64, its first sample ``offset`` s after the onset,
        at most ``room`` samples long (the rest of the clip) and at most :data:`TAIL` time constants."""
        sr = self.sample_rate
        length = max(0, min(room, math.ceil(TAIL * self.decay * sr)))
        tau = np.arange(length) / sr + offset  # (L,) seconds since the bounce, >= 0
        tone = np.zeros(length)
        for ratio, weight, decay_factor in PARTIALS:
            if pitch * ratio >= sr / 2:  # leave out partials at or above Nyquist: no aliasing
                continue
            span = min(length, math.ceil(TAIL * self.decay * decay_factor * sr))  # a fast partial: a shorter span
            t = tau[:span]
            tone[:span] += weight * np.exp(-t / (self.decay * decay_factor)) * np.sin(2 * np.pi * pitch * ratio * t)
        if self.attack > 0:
            ramp = tau < self.attack
            tone[ramp] *= 0.5 - 0.5 * np.cos(np.pi * tau[ramp] / self.attack)
        return tone

    def __getitem__(self, key) -> dict[str, Any]:
        index = self.moving_shapes.clip_index(key)
        item = self.moving_shapes[key]  # video, label and caption exactly as MovingShapes makes them
        bounces = self.bounces(index)
        audio = torch.from_numpy(self._render_audio(bounces))  # (C, S)
        rng = np.random.default_rng(np.random.SeedSequence(self._sound_caption_entropy(index, key)))
        caption = item["caption"] + _sound_phrase(len(bounces), rng)
        return {"video": item["video"], "audio": audio, "label": item["label"], "caption": caption}

    def _sound_caption_entropy(self, index: int, key) -> tuple[int, ...]:
        if isinstance(key, tuple) and len(key) > 1:  # (index, item_seed): the phrasing follows the item seed
            return (self.seed, index, _SOUND_CAPTION_STREAM, int(key[1]) % 2**64)
        return (self.seed, index, _SOUND_CAPTION_STREAM)

    def item_key(self, index: int, item_seed: int | None = None) -> str:
        """A string naming exactly the frames and the soundtrack of clip ``index`` (:mod:`mmdiff.modalities.item_keys`):
        the class, a hash of MovingShapes' settings hash (the frames) and every sound setting, and the index. The item
        seed only phrases the caption, so it is not part of the key."""
        video_hash = self.moving_shapes.item_key(index).split(":")[1]
        settings = {
            "video": video_hash,
            "version": self.sound_version,
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "pitches": self.pitches,
            "partials": PARTIALS,
            "decay": self.decay,
            "attack": self.attack,
            "size_bend": self.size_bend,
            "level": self.level,
        }
        return f"SoundingShapes:{settings_hash(settings)}:{self.moving_shapes.clip_index(index)}"

    def attributes(self, index: int) -> dict[str, Any]:
        """:meth:`MovingShapes.attributes` plus ``bounces``: the number of knocks in the clip."""
        return {**self.moving_shapes.attributes(index), "bounces": len(self.bounces(index))}

    def caption(self, index: int, rng: np.random.Generator | None = None) -> str:
        """MovingShapes' caption of clip ``index`` and a phrase on its sound (knocks at bounces, or silence), both
        drawn from ``rng`` (by default the streams ``__getitem__`` uses for a plain index)."""
        index = self.moving_shapes.clip_index(index)
        sound_rng = rng or np.random.default_rng(np.random.SeedSequence(self._sound_caption_entropy(index, index)))
        return self.moving_shapes.caption(index, rng) + _sound_phrase(len(self.bounces(index)), sound_rng)


def _pitches(pitches, shapes: tuple[str, ...], sample_rate: int) -> dict[str, float]:
    """``{shape: Hz}`` for every shape from the ``pitches`` argument, checked below Nyquist."""
    if pitches is None:
        table = {name: PITCHES[name] for name in shapes}
    elif isinstance(pitches, Mapping):
        missing = [name for name in shapes if name not in pitches]
        if missing:
            raise ValueError(f"pitches: no pitch for shape(s) {missing}; got {dict(pitches)}")
        table = {name: pitches[name] for name in shapes}
    elif isinstance(pitches, str) or len(pitches) != len(shapes):
        raise ValueError(f"pitches: need one Hz value per shape {list(shapes)} (or a mapping), got {pitches!r}")
    else:
        table = dict(zip(shapes, pitches))
    for name, hz in table.items():
        if isinstance(hz, bool) or not (isinstance(hz, int | float) and 20 <= hz < sample_rate / 2):
            raise ValueError(f"pitches: {name} needs a pitch in [20, {sample_rate / 2:g}) Hz, got {hz!r}")
    return {name: float(hz) for name, hz in table.items()}


_KNOCK_PHRASES = (
    " with a knock at every bounce",
    ", knocking at each bounce off a wall",
    ", bouncing off the walls with a knock",
    " with a tock at each bounce",
)
_COUNT_PHRASES = (" with {n} knocks", ", {n} knocks in all", " - {n} knocks off the walls")
_SILENT_PHRASES = (" in silence", ", silent", " without a sound", ", no bounce and no sound")


def _sound_phrase(bounces: int, rng: np.random.Generator) -> str:
    """A phrase on the soundtrack, true of it: knocks (sometimes counted) when there are bounces, else silence."""
    if bounces == 0:
        return _SILENT_PHRASES[int(rng.integers(len(_SILENT_PHRASES)))]
    if rng.uniform() < 0.3:  # name the number of knocks
        number = NUMBER_WORDS[bounces] if bounces < len(NUMBER_WORDS) else str(bounces)
        phrase = _COUNT_PHRASES[int(rng.integers(len(_COUNT_PHRASES)))].format(n=number)
        return phrase.replace("one knocks", "one knock")
    return _KNOCK_PHRASES[int(rng.integers(len(_KNOCK_PHRASES)))]
