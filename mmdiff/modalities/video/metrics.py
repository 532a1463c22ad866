"""Metrics that ask "do generated clips move like the data?", cheap enough for CPU and for every evaluation.

A video model can fail in ways a per-frame image metric misses: frozen clips (no motion), flicker (frames that change
at random instead of moving smoothly), objects that smear or split. Two answers here, both without a pretrained
network:

- :func:`temporal_change` and :func:`temporal_consistency_report`: the mean absolute change between consecutive
  frames, per clip, and how the generated set's level compares with the reference set's (ratio ~1 is good; ~0 means
  frozen clips, >> 1 flicker or noise).
- :func:`frechet_distance` over :func:`video_features`: a Fréchet distance between Gaussians fitted to small
  handcrafted per-clip feature vectors (colour, sharpness, amount and smoothness of change, motion of the bright
  objects, their number), in the spirit of FID (Heusel et al. 2017) and FVD (Unterthiner et al. 2018).

- :func:`object_stability`: do objects stay whole? Per clip, how often the number of bright blobs changes between
  frames, how much the bright area changes, and how much the bright pixels' mean colour changes: objects that split,
  merge, fade or drift in colour raise them; for the data they are near 0 except where objects cross.

:func:`video_report` combines them for a generated set against a reference set. Clips are ``(3, F, H, W)`` tensors or
arrays with values in [0, 1] (values outside are clipped, as they would be when written to a file), given as a
sequence or as one ``(N, 3, F, H, W)`` batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from ...metrics import frechet_distance

# A pixel is "bright" (part of an object) when its largest channel (HSV value) exceeds this. MovingShapes draws
# backgrounds below 0.2 and objects above 0.8 in that sense, so the threshold separates them with margin on both sides.
BRIGHT_THRESHOLD = 0.5

# Connectivity of bright blobs: 8-neighbours within a frame, never across frames (the middle slice of a 3x3x3 kernel).
_BLOB_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_BLOB_STRUCTURE[1] = True

# Names of the columns of video_features(), in order (see video_features for what each measures).
FEATURE_NAMES: tuple[str, ...] = (
    "red_mean",
    "green_mean",
    "blue_mean",
    "red_std",
    "green_std",
    "blue_std",
    "gradient_mean",
    "temporal_change_mean",
    "temporal_change_std",
    "late_change_share",
    "flicker_share",
    "bright_share_mean",
    "bright_share_std",
    "bright_speed_mean",
    "bright_speed_std",
    "blobs_mean",
    "blobs_std",
)


def _as_clips(clips: Iterable, channels: int | None = None) -> list[np.ndarray]:
    """A list of float32 arrays (C, F, H, W) clipped to [0, 1], from tensors or arrays (one batch or a sequence)."""
    if hasattr(clips, "detach"):  # one torch.Tensor batch (N, C, F, H, W), without importing torch here
        clips = clips.detach().cpu().numpy()
    if isinstance(clips, np.ndarray) and clips.ndim != 5:
        raise ValueError(f"clips: a single array must be a batch (N, C, F, H, W), got shape {clips.shape}")
    out = []
    for i, clip in enumerate(clips):
        if hasattr(clip, "detach"):
            clip = clip.detach().cpu().numpy()
        clip = np.asarray(clip, dtype=np.float32)
        if clip.ndim != 4 or clip.shape[1] < 2 or clip.size == 0:
            raise ValueError(f"clip {i}: need shape (C, F, H, W) with at least 2 frames, got {clip.shape}")
        if channels is not None and clip.shape[0] != channels:
            raise ValueError(f"clip {i}: need {channels} channels (C, F, H, W), got shape {clip.shape}")
        if not np.isfinite(clip).all():
            raise ValueError(f"clip {i}: contains NaN or inf")
        out.append(np.clip(clip, 0.0, 1.0))
    if not out:
        raise ValueError("clips: need at least one clip, got none")
    return out


def _frame_changes(clip: np.ndarray) -> np.ndarray:
    """Mean absolute change between consecutive frames of one clip (C, F, H, W), per frame pair: (F - 1,)."""
    return np.abs(np.diff(clip, axis=1)).mean(axis=(0, 2, 3))


def temporal_change(clips: Iterable) -> np.ndarray:
    """Mean absolute frame-to-frame difference of each clip, over channels, pixels and frame pairs: shape (N,).

    0 for a frozen clip; about ``coverage x contrast x speed / size`` for objects moving over a background (small, a
    few hundredths for :class:`~mmdiff.modalities.video.synth.MovingShapes`); about 1/3 for uniform noise.
    """
    return np.array([_frame_changes(clip).mean() for clip in _as_clips(clips)])


def _set_stats(name: str, changes: np.ndarray) -> dict[str, float]:
    return {f"{name}_temporal_change_mean": float(changes.mean()), f"{name}_temporal_change_std": float(changes.std())}


def temporal_consistency_report(generated: Iterable, reference: Iterable) -> dict[str, float]:
    """How much generated clips change between frames compared with reference clips, as one flat dict.

    Keys: ``generated_temporal_change_mean`` / ``_std``, ``reference_temporal_change_mean`` / ``_std`` (over the clips
    of each set, see :func:`temporal_change`) and ``temporal_change_ratio`` = generated mean / reference mean (NaN
    when the reference is frozen). A ratio near 1 is good; near 0 means frozen clips, well above 1 flicker or noise.
    """
    gen, ref = temporal_change(generated), temporal_change(reference)
    report = {**_set_stats("generated", gen), **_set_stats("reference", ref)}
    ref_mean = ref.mean()
    report["temporal_change_ratio"] = float(gen.mean() / ref_mean) if ref_mean > 0 else float("nan")
    return report


def _late_share(changes: np.ndarray) -> float:
    """Share of a clip's total change in the second half of its frame pairs (0.5 for steady motion or none)."""
    n = len(changes)
    early, late = changes[: n // 2].sum(), changes[n - n // 2 :].sum()
    return float(late / (early + late)) if early + late > 0 else 0.5


def _flicker_share(clip: np.ndarray) -> float:
    """Share of the temporal spectrum's energy (DC excluded) above half the Nyquist frequency, 1/4 cycle per frame.

    Smooth motion changes each pixel slowly (low temporal frequencies, a share near 0); white noise spreads its
    energy evenly (about 0.5); frame-to-frame flicker pushes it towards 1. 0 for a frozen clip.
    """
    frames = clip.shape[1]
    spectrum = np.abs(np.fft.rfft(clip - clip.mean(axis=1, keepdims=True), axis=1)) ** 2  # (C, F // 2 + 1, H, W)
    energy = spectrum.sum(axis=(0, 2, 3))[1:]  # (F // 2,) per frequency bin, DC dropped
    high = energy[np.arange(1, len(energy) + 1) > frames / 4].sum()  # bins k with k / F > 1/4
    total = energy.sum()
    return float(high / total) if total > 0 else 0.0


def _bright_speed(mask: np.ndarray) -> tuple[float, float]:
    """Mean and std of the speed of the bright pixels' centre of mass, in shorter-frame-sides per frame.

    ``mask`` is (F, H, W). Frame pairs where either frame has no bright pixel are skipped; (0, 0) if none is left.
    """
    _, h, w = mask.shape
    count = mask.sum(axis=(1, 2))  # (F,)
    safe = np.maximum(count, 1)
    com_y = (mask.sum(axis=2) * np.arange(h)).sum(axis=1) / safe  # (F,)
    com_x = (mask.sum(axis=1) * np.arange(w)).sum(axis=1) / safe  # (F,)
    valid = (count[1:] > 0) & (count[:-1] > 0)  # (F - 1,)
    speed = np.hypot(np.diff(com_y), np.diff(com_x))[valid] / min(h, w)
    return (float(speed.mean()), float(speed.std())) if speed.size else (0.0, 0.0)


def _blob_counts(mask: np.ndarray) -> np.ndarray:
    """Number of 8-connected bright blobs in each frame of ``mask`` (F, H, W): shape (F,)."""
    labels, _ = ndimage.label(mask, structure=_BLOB_STRUCTURE)  # labels never span frames
    frames = [s[0].start for s in ndimage.find_objects(labels) if s is not None]  # the frame of each blob
    return np.bincount(np.asarray(frames, dtype=np.int64), minlength=mask.shape[0])[: mask.shape[0]]


#: Keys of :func:`object_stability`, each a mean over clips (see there).
OBJECT_STABILITY_KEYS: tuple[str, ...] = ("object_count_change_share", "object_area_change", "object_colour_change")


def _clip_object_stability(clip: np.ndarray) -> tuple[float, float, float]:
    """The :data:`OBJECT_STABILITY_KEYS` of one clip (3, F, H, W)."""
    mask = clip.max(axis=0) > BRIGHT_THRESHOLD  # (F, H, W) object pixels
    count_changes = float((np.diff(_blob_counts(mask)) != 0).mean())
    area = mask.sum(axis=(1, 2)).astype(np.float64)  # (F,) bright pixels per frame
    area_change = float(np.abs(np.diff(area)).mean() / area.mean()) if area.mean() > 0 else 0.0
    colour = (clip * mask).sum(axis=(2, 3)) / np.maximum(area, 1.0)  # (3, F) mean colour of the bright pixels
    both = (area[1:] > 0) & (area[:-1] > 0)  # (F - 1,) frame pairs where both frames show an object
    colour_change = float(np.abs(np.diff(colour, axis=1))[:, both].mean()) if both.any() else 0.0
    return count_changes, area_change, colour_change


def object_stability(clips: Iterable) -> dict[str, float]:
    """Do objects stay whole? Means over ``clips`` (3, F, H, W) of three per-clip measures of the bright objects
    (pixels whose largest channel exceeds :data:`BRIGHT_THRESHOLD`):

    - ``object_count_change_share``: share of consecutive frame pairs whose number of 8-connected bright blobs
      differs (objects that split, merge, vanish or appear; in the data only objects that touch or cross),
    - ``object_area_change``: mean absolute frame-to-frame change of the bright area, relative to the clip's mean
      bright area (objects that fade, grow or shrink),
    - ``object_colour_change``: mean absolute frame-to-frame change of the bright pixels' mean colour, per channel
      in [0, 1] units (colour drift).

    0 for a clip whose objects keep their number, size and colour; compare with real clips scored the same way.
    """
    per_clip = np.array([_clip_object_stability(clip) for clip in _as_clips(clips, channels=3)])  # (N, 3)
    return dict(zip(OBJECT_STABILITY_KEYS, (float(v) for v in per_clip.mean(axis=0))))


def _clip_features(clip: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_NAMES` vector of one clip (3, F, H, W): shape (17,)."""
    value = clip.max(axis=0)  # (F, H, W) HSV value: brightness regardless of hue
    flat = clip.reshape(3, -1)  # (3, F * H * W)
    gy, gx = np.diff(value, axis=1)[:, :, :-1], np.diff(value, axis=2)[:, :-1, :]  # (F, H - 1, W - 1) each
    changes = _frame_changes(clip)  # (F - 1,)
    mask = value > BRIGHT_THRESHOLD  # (F, H, W)
    bright = mask.mean(axis=(1, 2))  # (F,) share of bright pixels
    blobs = _blob_counts(mask)  # (F,)
    return np.array(
        [
            *flat.mean(axis=1),
            *flat.std(axis=1),
            np.hypot(gy, gx).mean(),
            changes.mean(),
            changes.std(),
            _late_share(changes),
            _flicker_share(clip),
            bright.mean(),
            bright.std(),
            *_bright_speed(mask),
            blobs.mean(),
            blobs.std(),
        ]
    )


def video_features(clips: Iterable) -> np.ndarray:
    """Handcrafted features of each clip (3, F, H, W), shape (N, 17), columns named by :data:`FEATURE_NAMES`.

    Per clip:

    - ``{red,green,blue}_mean`` / ``_std``: colour statistics over all pixels and frames (palette and contrast),
    - ``gradient_mean``: mean spatial gradient magnitude of the value channel (sharpness; blur lowers it, noise
      raises it),
    - ``temporal_change_mean`` / ``_std``: mean absolute change between consecutive frames, its mean over frame
      pairs (:func:`temporal_change`) and its std (steady motion: small),
    - ``late_change_share``: share of the change in the second half of the clip (0.5 when motion neither dies out
      nor starts late),
    - ``flicker_share``: share of the temporal spectrum's energy above 1/4 cycle per frame (smooth motion: small,
      noise: ~0.5),
    - ``bright_share_mean`` / ``_std``: share of bright pixels (value > :data:`BRIGHT_THRESHOLD`) per frame: object
      size, and whether objects keep their size over time,
    - ``bright_speed_mean`` / ``_std``: speed of the bright pixels' centre of mass in shorter-frame-sides per frame
      (how fast objects move, and how steadily),
    - ``blobs_mean`` / ``_std``: number of 8-connected bright blobs per frame (objects that split, vanish or multiply).

    Meant for :func:`frechet_distance`, which standardises the columns by the reference set.
    """
    return np.stack([_clip_features(clip) for clip in _as_clips(clips, channels=3)])


def video_report(
    generated: Iterable, reference: Iterable, reference_features: np.ndarray | None = None, warn: bool = True
) -> dict[str, float]:
    """Motion and feature statistics of ``generated`` clips against ``reference`` clips, as one flat dict.

    Keys: those of :func:`temporal_consistency_report`, ``frechet_distance`` (of :func:`video_features`, generated
    vs reference, in units of the reference's spread; needs at least 2 clips per set) and the
    :data:`OBJECT_STABILITY_KEYS` of the generated clips (:func:`object_stability`). Flat so it logs as scalars.
    ``reference_features``: the reference's :func:`video_features` when already computed (an evaluator scoring
    several sets against one reference); ``warn``: let the Fréchet distance warn about a small set.
    """
    generated, reference = _as_clips(generated, channels=3), _as_clips(reference, channels=3)
    if reference_features is None:
        reference_features = video_features(reference)  # (n, len(FEATURE_NAMES))
    report = temporal_consistency_report(generated, reference)
    report["frechet_distance"] = frechet_distance(video_features(generated), reference_features, warn=warn)
    return report | object_stability(generated)
