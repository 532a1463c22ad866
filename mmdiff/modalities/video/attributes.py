"""Prompt adherence for the moving shapes without any pretrained network: read a prompt, measure a clip, compare.

Why: a text-conditioned video model is only useful if its clips show what the prompt asks. The built-in data
(:class:`~mmdiff.modalities.video.synth.MovingShapes`) is simple enough that every attribute a caption names can be
measured from pixels with a few lines of numpy:

- colour: the HSV hue of the objects' core pixels (bright and saturated; the background is dark, max channel <= 0.2),
  named by the nearest :data:`~mmdiff.modalities.video.synth.PALETTE` range;
- shape: moment descriptors of each object's soft mask (coverage estimated from brightness, so anti-aliased edges
  count by their coverage): normalised spread (circle 1/(2 pi) = 0.159, square 1/6, equilateral triangle
  1/(6 sqrt 3) * 2 = 0.192; Hu 1962), the vertical skewness (an apex-up triangle has mass low, its tail up) and the
  diagonal-to-axis ratio of fourth moments (4/3 for an axis-aligned square, 1 for a circle), each with the pixel
  box's variance (1/12 px^2) removed. A nearest-class-mean rule in standardised feature space classifies them; the
  class means and spreads come from real clips (:meth:`VideoAttributeEstimator.from_synth`) or, by default, from
  the ideal shapes rendered large;
- direction and speed: least-squares slope of each colour's centroid over the first frames (before most bounces);
- count: the median number of bright connected components over the frames.

Use: ``parse_prompt`` the prompts, ``estimate`` the generated clips, then ``adherence`` and ``chance``; run real clips
through the same estimator for the ceiling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .synth import (
    BACKGROUND_MAX,
    DIRECTIONS,
    NUMBER_WORDS,
    PALETTE,
    SHAPES,
    SPEED_SPLIT,
    coverage,
    direction_word,
    hue_distance,
    rgb_to_hue,
)

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "direction", "speed", "count")
FEATURE_NAMES: tuple[str, ...] = ("spread", "skew_y", "diagonal_ratio")
BRIGHT = 0.45  # an object pixel: max channel above this (background <= 0.2, objects' value >= 0.8)
_SHAPE_WORDS = {"circle": "circle", "circles": "circle", "disc": "circle", "disk": "circle", "ball": "circle"}
_SHAPE_WORDS |= {"square": "square", "squares": "square", "triangle": "triangle", "triangles": "triangle"}
_SPEED_WORDS = {"slow": "slow", "slowly": "slow", "fast": "fast", "quick": "fast", "quickly": "fast"}
_VERTICAL = {"up": "up", "upward": "up", "upwards": "up", "down": "down", "downward": "down", "downwards": "down"}
_HORIZONTAL = {"left": "left", "leftward": "left", "leftwards": "left", "right": "right", "rightward": "right"}
_HORIZONTAL["rightwards"] = "right"


def parse_prompt(text: str) -> dict[str, Any]:
    """The attributes a prompt names, only those it names: ``"a red circle moving left"`` ->
    ``{"shape": "circle", "colour": "red", "direction": "left"}``.

    Keys: ``shape`` (first shape word; plurals and disc/disk/ball count), ``colour`` (first palette name) and
    ``colours`` (all, in order) when any, ``direction`` (one of :data:`~mmdiff.modalities.video.synth.DIRECTIONS`:
    the first vertical and first horizontal word combined, ``"up-left"`` for "up and to the left"), ``speed``
    (slow/fast, also slowly/quick/quickly), ``count`` (a number word one..nine or a digit before the shape word).
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    out: dict[str, Any] = {}
    shapes = [i for i, word in enumerate(words) if word in _SHAPE_WORDS]
    if shapes:
        out["shape"] = _SHAPE_WORDS[words[shapes[0]]]
        before = words[max(shapes[0] - 3, 0) : shapes[0]]  # "two circles", "two fast red circles"
        numbers = [
            NUMBER_WORDS.index(w) if w in NUMBER_WORDS else int(w) for w in before if w in NUMBER_WORDS or w.isdigit()
        ]
        if numbers and numbers[-1] > 0:
            out["count"] = numbers[-1]
    colours = [word for word in words if word in PALETTE]
    if colours:
        out["colour"], out["colours"] = colours[0], colours
    vertical = next((_VERTICAL[w] for w in words if w in _VERTICAL), None)
    horizontal = next((_HORIZONTAL[w] for w in words if w in _HORIZONTAL), None)
    if vertical or horizontal:
        out["direction"] = "-".join(part for part in (vertical, horizontal) if part)
    speed = next((_SPEED_WORDS[w] for w in words if w in _SPEED_WORDS), None)
    if speed:
        out["speed"] = speed
    return out


def shape_features(alpha: np.ndarray) -> np.ndarray:
    """Moment descriptors (:data:`FEATURE_NAMES`) of one object's soft mask ``alpha`` (h, w) in [0, 1].

    Scale-free and translation-free; the pixel box's own variance (1/12 px^2 per axis) is removed, so small objects
    read like large ones.
    """
    area = alpha.sum()
    ys, xs = np.nonzero(alpha > 0)
    weights = alpha[ys, xs]
    y = ys + 0.5 - (weights * (ys + 0.5)).sum() / area  # (n,) centred coordinates
    x = xs + 0.5 - (weights * (xs + 0.5)).sum() / area
    var_y = max((weights * y**2).sum() / area - 1 / 12, 1e-6)
    var_x = max((weights * x**2).sum() / area - 1 / 12, 1e-6)
    spread = (var_x + var_y) / area  # circle 0.159, square 0.167, triangle 0.192
    skew_y = (weights * y**3).sum() / area / var_y**1.5  # triangle (apex up) < 0, circle and square 0
    u, v = (x + y) / np.sqrt(2), (x - y) / np.sqrt(2)
    diagonal_ratio = (weights * (u**4 + v**4)).sum() / max((weights * (x**4 + y**4)).sum(), 1e-9)  # square 4/3
    return np.array([spread, skew_y, diagonal_ratio])


def _ideal_prototypes() -> tuple[np.ndarray, np.ndarray]:
    """Class means (3, 3) of :func:`shape_features` for ideal shapes rendered at radius 12 px, and fixed spreads."""
    means = []
    for shape in SHAPES:
        alpha = coverage(shape, np.array([[20.3, 20.6]]), 12.0, 40, 40)[0]  # (40, 40)
        means.append(shape_features(alpha))
    return np.stack(means), np.array([0.006, 0.15, 0.06])  # spreads: what 16x16 renders scatter by, about


class VideoAttributeEstimator:
    """Colour, shape, direction, speed and count of clips (3, F, H, W) in [0, 1], measured as the module says.

    Args:
        first_frames: how many frames from the start the motion is measured over (fewer: less chance of a bounce,
            more noise).
        class_means: (len(shapes), 3) feature means per shape; default: the ideal shapes'.
        class_scales: (3,) feature spreads; default: fixed ones.
        shapes: the shape names, in the order of ``class_means``.
    """

    def __init__(
        self,
        first_frames: int = 3,
        class_means: np.ndarray | None = None,
        class_scales: np.ndarray | None = None,
        shapes: Sequence[str] = SHAPES,
    ):
        if first_frames < 2:
            raise ValueError(f"first_frames: need at least 2 frames to measure motion, got {first_frames}")
        ideal_means, ideal_scales = _ideal_prototypes()
        self.first_frames = int(first_frames)
        self.shapes = tuple(shapes)
        self.class_means = np.asarray(ideal_means if class_means is None else class_means, dtype=np.float64)
        self.class_scales = np.asarray(ideal_scales if class_scales is None else class_scales, dtype=np.float64)
        if self.class_means.shape != (len(self.shapes), len(FEATURE_NAMES)):
            raise ValueError(
                f"class_means: need shape ({len(self.shapes)}, {len(FEATURE_NAMES)}), got {self.class_means.shape}"
            )

    # -- fitting the shape rule on real clips -------------------------------------------------------------------
    def fit(self, clips, shapes: Sequence[str]) -> VideoAttributeEstimator:
        """Fit the class means and the pooled per-feature spread of the shape rule on ``clips`` with true ``shapes``."""
        features = [self._clip_shape_features(np.asarray(clip, dtype=np.float64)) for clip in self._as_list(clips)]
        keep = [i for i, f in enumerate(features) if f is not None]
        names = sorted(set(shapes), key=list(SHAPES).index)
        x = np.stack([features[i] for i in keep])  # (n, 3)
        y = np.array([names.index(shapes[i]) for i in keep])  # (n,)
        missing = [name for k, name in enumerate(names) if not (y == k).any()]
        if missing:
            raise ValueError(f"fit: no usable clip of shape(s) {missing}; give clips with visible objects")
        self.shapes = tuple(names)
        self.class_means = np.stack([x[y == k].mean(axis=0) for k in range(len(names))])
        self.class_scales = np.sqrt(np.mean((x - self.class_means[y]) ** 2, axis=0)) + 1e-6
        return self

    @classmethod
    def from_synth(cls, dataset, n: int = 96, **kwargs) -> VideoAttributeEstimator:
        """An estimator whose shape rule is fitted on the first ``n`` clips of a ``MovingShapes`` data set."""
        n = min(int(n), len(dataset))
        clips = [dataset.render(i) for i in range(n)]
        shapes = [dataset.attributes(i)["shape"] for i in range(n)]
        return cls(**kwargs).fit(clips, shapes)

    # -- measuring -----------------------------------------------------------------------------------------------
    @staticmethod
    def _as_list(clips) -> list:
        if hasattr(clips, "detach"):
            clips = clips.detach().float().cpu().numpy()
        if isinstance(clips, np.ndarray):
            if clips.ndim == 4:
                return [clips]
            if clips.ndim != 5:
                raise ValueError(f"clips: need (3, F, H, W) or a batch (N, 3, F, H, W), got shape {clips.shape}")
            return list(clips)
        out = []
        for clip in clips:
            clip = clip.detach().float().cpu().numpy() if hasattr(clip, "detach") else np.asarray(clip)
            if clip.ndim != 4 or clip.shape[0] != 3:
                raise ValueError(f"clips: each clip must be (3, F, H, W) with 3 channels, got shape {clip.shape}")
            out.append(clip)
        return out

    def _objects(self, clip: np.ndarray) -> list[list[dict[str, Any]]]:
        """Per frame, the bright connected components: colour name, soft mask, centroid (y, x), area."""
        rgb = np.clip(clip, 0.0, 1.0).transpose(1, 2, 3, 0)  # (F, H, W, 3)
        top = rgb.max(axis=-1)  # (F, H, W)
        saturation = (top - rgb.min(axis=-1)) / np.maximum(top, 1e-6)
        names = list(PALETTE)
        hue = rgb_to_hue(rgb)  # (F, H, W)
        nearest = np.argmin(np.stack([hue_distance(hue, name) for name in names]), axis=0)  # (F, H, W)
        frames = []
        for t in range(rgb.shape[0]):
            labels, _ = ndimage.label(top[t] > BRIGHT)
            dark = top[t][top[t] <= BRIGHT]
            floor = float(np.median(dark)) if dark.size else BACKGROUND_MAX / 2  # the local background level
            objects = []
            for k, box in enumerate(ndimage.find_objects(labels), start=1):
                component = labels[box] == k
                if component.sum() < 2:
                    continue
                peak = float(top[t][box][component].max())
                core = component & (top[t][box] >= 0.85 * peak) & (saturation[t][box] >= 0.25)
                if not core.any():
                    continue
                votes = np.bincount(nearest[t][box][core], minlength=len(names))
                grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)  # one pixel of soft edge
                region = ndimage.binary_dilation(labels[grown] == k)
                alpha = np.clip((top[t][grown] - floor) / max(peak - floor, 1e-6), 0.0, 1.0) * region  # (h, w)
                area = alpha.sum()
                ys, xs = np.nonzero(alpha)
                centroid = np.array(
                    [
                        (alpha[ys, xs] * (ys + 0.5)).sum() / area + grown[0].start,
                        (alpha[ys, xs] * (xs + 0.5)).sum() / area + grown[1].start,
                    ]
                )
                objects.append(
                    {
                        "colour": names[int(np.argmax(votes))],  # the majority of its core pixels
                        "votes": dict(zip(names, votes.tolist())),  # core pixels per colour (two objects may touch)
                        "alpha": alpha,
                        "centroid": centroid,
                        "area": area,
                    }
                )
            frames.append(objects)
        return frames

    def _clip_shape_features(self, clip: np.ndarray, frames=None) -> np.ndarray | None:
        """The median shape features over all objects of all frames of a clip; ``None`` when nothing is visible."""
        frames = self._objects(clip) if frames is None else frames
        features = [shape_features(obj["alpha"]) for objects in frames for obj in objects if obj["area"] >= 3]
        return np.median(np.stack(features), axis=0) if features else None

    def classify_shape(self, features: np.ndarray) -> str:
        """The shape whose class mean is nearest to ``features`` in units of the per-feature spreads."""
        distances = (((features - self.class_means) / self.class_scales) ** 2).sum(axis=1)
        return self.shapes[int(np.argmin(distances))]

    def estimate(self, clips) -> list[dict[str, Any]]:
        """Per clip: ``shape``, ``colour`` (the one with most object pixels), ``colours`` (each with at least 15% of
        the objects' core pixels, most first), ``direction`` and ``speed`` (of the ``colour`` object), ``directions`` and
        ``speeds`` (per colour), ``count``. Values are ``None`` when a clip shows no bright object."""
        results = []
        for clip in self._as_list(clips):
            clip = np.asarray(clip, dtype=np.float64)  # (3, F, H, W)
            frames = self._objects(clip)
            side = min(clip.shape[-2:])
            mass: dict[str, float] = {}
            tracks: dict[str, list[tuple[int, np.ndarray]]] = {}
            for t, objects in enumerate(frames):
                centres: dict[str, list] = {}
                for obj in objects:
                    for colour, votes in obj["votes"].items():
                        mass[colour] = mass.get(colour, 0.0) + votes
                    centres.setdefault(obj["colour"], []).append((obj["area"], obj["centroid"]))
                for colour, items in centres.items():  # one centroid per colour and frame (area-weighted)
                    weights = np.array([a for a, _ in items])
                    tracks.setdefault(colour, []).append(
                        (t, (weights[:, None] * [c for _, c in items]).sum(0) / weights.sum())
                    )
            features = self._clip_shape_features(clip, frames)
            total = sum(mass.values())
            colours = sorted((c for c in mass if mass[c] >= 0.15 * total), key=mass.get, reverse=True)
            directions, speeds = {}, {}
            for colour in colours:
                points = [(t, c) for t, c in tracks.get(colour, []) if t < self.first_frames]
                if len(points) < 2:
                    continue
                times = np.array([t for t, _ in points], dtype=np.float64)  # (k,)
                centres = np.stack([c for _, c in points])  # (k, 2)
                slope = np.polyfit(times, centres, 1)[0]  # (2,) pixels per frame (vy, vx)
                directions[colour] = direction_word(slope)
                speeds[colour] = "slow" if np.hypot(*slope) / side < SPEED_SPLIT else "fast"
            counts = [sum(obj["area"] >= 3 for obj in objects) for objects in frames]
            main = colours[0] if colours else None
            results.append(
                {
                    "shape": None if features is None else self.classify_shape(features),
                    "colour": main,
                    "colours": colours,
                    "direction": directions.get(main),
                    "speed": speeds.get(main),
                    "directions": directions,
                    "speeds": speeds,
                    "count": int(np.percentile(counts, 75, method="lower")) if total > 0 else 0,
                }
            )
        return results


def _matches(attribute: str, requested: dict[str, Any], estimated: dict[str, Any]) -> bool:
    want = requested[attribute]
    if attribute == "colour":
        return want in (estimated.get("colours") or [estimated.get("colour")])
    if attribute in ("direction", "speed"):  # the motion of the object of the requested colour, when there is one
        per_colour = estimated.get(attribute + "s") or {}
        return per_colour.get(requested.get("colour"), estimated.get(attribute)) == want
    return estimated.get(attribute) == want


def adherence(requested: Sequence[dict[str, Any]], estimated: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per attribute, the share of clips whose estimate matches the request, over the clips whose request names it.

    A colour matches when it is among the clip's estimated ``colours``; a direction or speed is that of the object
    of the requested colour when the prompt names one. Attributes no request names are left out.
    """
    if len(requested) != len(estimated):
        raise ValueError(f"adherence: {len(requested)} requests but {len(estimated)} estimates; need one per clip")
    out = {}
    for attribute in ATTRIBUTES:
        pairs = [(r, e) for r, e in zip(requested, estimated) if r.get(attribute) is not None]
        if pairs:
            out[attribute] = sum(_matches(attribute, r, e) for r, e in pairs) / len(pairs)
    return out


def chance(
    requested: Sequence[dict[str, Any]], estimated: Sequence[dict[str, Any]] | None = None, max_count: int = 2
) -> dict[str, float]:
    """What :func:`adherence` would score by guessing uniformly, per requested attribute: 1/3 for the shape, 1/8 for
    the 8-way direction, 1/2 for the speed, ``1 / max_count`` for the count, and for the colour the mean of
    ``len(colours) / len(PALETTE)`` over the estimates (a clip showing two colours matches two names; 1/6 without
    estimates)."""
    out = {}
    for attribute in ATTRIBUTES:
        if not any(r.get(attribute) is not None for r in requested):
            continue
        if attribute == "colour":
            sizes = [max(len(e.get("colours") or []), 1) for e in estimated] if estimated else [1]
            out[attribute] = float(np.mean(sizes)) / len(PALETTE)
        else:
            out[attribute] = 1.0 / {"shape": len(SHAPES), "direction": len(DIRECTIONS), "speed": 2}.get(
                attribute, max_count
            )
    return out
