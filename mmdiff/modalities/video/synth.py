"""A synthetic video source: bright shapes gliding over a dark background and bouncing off the frame edges.

Why: a video diffusion model needs data that ships with the package (no downloads) and whose structure a metric can
check. Every clip here has constant-velocity motion with elastic bounces (so :mod:`mmdiff.modalities.video.metrics`
can ask whether *generated* clips move like the data: steady change between frames, no flicker, compact blobs), and
one shape kind per clip (the class label, so class-conditional models have something to learn).

A clip is a static dark background (a linear gradient between two random dark colours) and 1-2 objects of the clip's
shape kind, each with a random bright colour, a random size and a random constant velocity. Objects move in closed
form, ``reflect(p0 + v t)`` per axis, so a bounce is exact even between frames. Shapes are drawn with anti-aliasing
from a signed distance ``d`` (pixels, negative inside): pixel coverage ``clip(0.5 - d, 0, 1)``, a one-pixel soft edge.
All shapes of one ``radius`` have the same area ``pi radius^2``, so the label is carried by the outline, not the size.

Units (resolution-free, so that a config works at any resolution): ``radius_range`` and ``speed_range`` are fractions
of the shorter frame side (per frame for speeds); the defaults are 0.5..2 pixels per frame at 32x32. Positions are
``(y, x)`` in pixels with pixel ``(i, j)`` covering ``[i, i + 1) x [j, j + 1)``.

Everything is vectorised over frames in numpy: 16 frames at 32x32 take about half a millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND_MAX = 0.2  # background channels lie in [0, BACKGROUND_MAX]: dark, whatever the colour
SATURATION_RANGE = (0.5, 1.0)  # object colours: HSV with these saturations and values, any hue
VALUE_RANGE = (0.8, 1.0)


def half_extent(shape: str, radius: float) -> tuple[float, float]:
    """Half height and half width ``(hy, hx)`` in pixels of a ``shape`` of area ``pi radius^2``, centred on its box.

    - circle: radius ``r``,
    - square (axis-aligned): half side ``r sqrt(pi) / 2``,
    - triangle (equilateral, apex up): side ``s = r sqrt(4 pi / sqrt(3))``, height ``s sqrt(3) / 2``.
    """
    if shape == "circle":
        return float(radius), float(radius)
    if shape == "square":
        a = float(radius * np.sqrt(np.pi) / 2)
        return a, a
    if shape == "triangle":
        side = float(radius * np.sqrt(4 * np.pi / np.sqrt(3)))
        return float(side * np.sqrt(3) / 4), side / 2
    raise ValueError(f"unknown shape {shape!r}; known shapes: {list(SHAPES)}")


def signed_distance(shape: str, dy: np.ndarray, dx: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) from offsets ``(dy, dx)`` to the centre of a ``shape``, any shape.

    Exact for the circle; for the square and the triangle the maximum of the distances to their edges' lines, which
    is exact inside and along the edges and slightly under-estimates the distance beyond a corner (a sub-pixel
    rounding of the corners once anti-aliased).
    """
    hy, hx = half_extent(shape, radius)
    if shape == "circle":
        return np.hypot(dy, dx) - radius
    if shape == "square":
        return np.maximum(np.abs(dy) - hy, np.abs(dx) - hx)
    # Triangle, apex at (-hy, 0) (y points down), base at y = +hy: the slanted edges have outward normals
    # (sqrt(3)/2, -1/2) in (|x|, y), through the apex.
    slant = np.sqrt(3) / 2 * np.abs(dx) - (dy + hy) / 2
    return np.maximum(dy - hy, slant)


def coverage(shape: str, centres: np.ndarray, radius: float, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage (F, H, W) in [0, 1] of a ``shape`` at each of ``centres`` (F, 2) ``(y, x)`` pixels."""
    ys = np.arange(height) + 0.5  # (H,) pixel centres
    xs = np.arange(width) + 0.5  # (W,)
    dy = ys[None, :, None] - centres[:, 0, None, None]  # (F, H, 1)
    dx = xs[None, None, :] - centres[:, 1, None, None]  # (F, 1, W)
    return np.clip(0.5 - signed_distance(shape, dy, dx, radius), 0.0, 1.0)  # (F, H, W)


def reflect(p: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold positions ``p`` into ``[low, high]`` as a point bouncing elastically between two walls would be."""
    span = high - low
    if span <= 0:
        return np.full_like(p, low)
    u = np.mod(p - low, 2 * span)
    return low + np.where(u <= span, u, 2 * span - u)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB (..., 3) in [0, 1] of HSV colours (hue in turns, [0, 1)); the closed form without branches."""
    h, s, v = (np.asarray(a, dtype=np.float64)[..., None] for a in (h, s, v))
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * h) % 6.0  # (..., 3)
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class MovingShapes(Dataset):
    """``size`` synthetic clips of ``num_frames`` frames at ``resolution`` (H, W): bouncing shapes, rendered on the fly.

    Clip ``i`` depends only on ``(seed, i)``: its shape kind is ``shapes[i % len(shapes)]`` (balanced classes; the
    label is that index) and everything else (background, number of objects, colours, sizes, start positions,
    velocities) comes from ``numpy.random.default_rng((seed, i))``. Keys are an index or the trainer's
    ``(index, item_seed)`` pair; the item seed is ignored on purpose, so that clip ``i`` is always the same clip and
    :meth:`trajectories` describes exactly what ``self[i]`` shows (a fixed finite data set, like
    :class:`~mmdiff.modalities.audio.synth.MusicSynth`).

    Args:
        size: number of clips.
        num_frames: frames per clip (>= 2).
        resolution: ``(H, W)`` in pixels (each >= 8); need not be square.
        shapes: shape kinds, the classes, from :data:`SHAPES`.
        num_objects: ``(min, max)`` objects per clip, inclusive.
        speed_range: ``(min, max)`` speed in fractions of the shorter frame side per frame (default: 0.5..2 pixels per
            frame at 32x32). Directions are uniform.
        radius_range: ``(min, max)`` object size in fractions of the shorter side; a shape of radius ``r`` has the
            area of a circle of radius ``r``.
        seed: the data set's seed.

    Items are ``{"video": (3, num_frames, H, W) float32 in [0, 1], "label": () int64 shape index}``.
    """

    def __init__(
        self,
        size: int = 2048,
        num_frames: int = 16,
        resolution: tuple[int, int] | int = (32, 32),
        shapes: Sequence[str] = SHAPES,
        num_objects: tuple[int, int] = (1, 2),
        speed_range: tuple[float, float] = (1 / 64, 1 / 16),
        radius_range: tuple[float, float] = (0.08, 0.16),
        seed: int = 0,
    ):
        if isinstance(resolution, int):
            resolution = (resolution, resolution)
        if size < 1:
            raise ValueError(f"size: need at least one clip, got {size}")
        if num_frames < 2:
            raise ValueError(f"num_frames: need at least 2 frames for motion, got {num_frames}")
        if len(resolution) != 2 or min(resolution) < 8:
            raise ValueError(f"resolution: need (H, W) with both >= 8 pixels, got {tuple(resolution)}")
        if isinstance(shapes, str):
            raise ValueError(f"shapes: need a sequence of shape names, got the string {shapes!r}")
        unknown = [name for name in shapes if name not in SHAPES]
        if unknown or not shapes:
            raise ValueError(f"unknown shape(s) {unknown or '(none given)'}; known shapes: {list(SHAPES)}")
        if not 1 <= num_objects[0] <= num_objects[1]:
            raise ValueError(f"num_objects: need 1 <= min <= max, got {tuple(num_objects)}")
        if not 0 <= speed_range[0] <= speed_range[1] <= 0.5:
            raise ValueError(
                f"speed_range: need 0 <= min <= max <= 0.5 (fractions of the shorter side per frame), "
                f"got {tuple(speed_range)}"
            )
        if not 0 < radius_range[0] <= radius_range[1] <= 0.35:
            raise ValueError(
                f"radius_range: need 0 < min <= max <= 0.35 (fractions of the shorter side; larger shapes do not "
                f"fit the frame), got {tuple(radius_range)}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.size = int(size)
        self.num_frames = int(num_frames)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.shapes = tuple(shapes)
        self.num_objects = (int(num_objects[0]), int(num_objects[1]))
        self.speed_range = (float(speed_range[0]), float(speed_range[1]))
        self.radius_range = (float(radius_range[0]), float(radius_range[1]))
        self.seed = int(seed)

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
        h, w = self.resolution
        side = min(h, w)
        lo, hi = (s * side for s in self.speed_range)
        return (
            f"MovingShapes: {self.size} clips of {self.num_frames} frames at {h}x{w}, shapes {'/'.join(self.shapes)}, "
            f"{self.num_objects[0]}-{self.num_objects[1]} objects, speed {lo:.2g}-{hi:.2g} px/frame, seed {self.seed}"
        )

    def _index(self, key) -> int:
        index = key[0] if isinstance(key, tuple) else key
        index = int(index)
        if not -self.size <= index < self.size:
            raise IndexError(f"clip index {index} out of range for {self.size} clips")
        return index % self.size

    def _scene(self, index: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The background (3, H, W) and the objects of clip ``index`` (see :meth:`trajectories`)."""
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, index)))
        shape = self.shapes[index % len(self.shapes)]
        background = self._background(rng)
        count = int(rng.integers(self.num_objects[0], self.num_objects[1] + 1))
        return background, [self._object(rng, shape) for _ in range(count)]

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A linear gradient (3, H, W) between two dark colours along a random direction."""
        h, w = self.resolution
        ends = rng.uniform(0.0, BACKGROUND_MAX, size=(2, 3))  # (2, 3) the two end colours
        angle = rng.uniform(0.0, 2 * np.pi)
        ys, xs = np.arange(h) + 0.5 - h / 2, np.arange(w) + 0.5 - w / 2
        proj = np.sin(angle) * ys[:, None] + np.cos(angle) * xs[None, :]  # (H, W)
        t = 0.5 + proj / (abs(np.sin(angle)) * h + abs(np.cos(angle)) * w)  # (H, W) in [0, 1]
        return ends[0, :, None, None] * (1 - t) + ends[1, :, None, None] * t  # (3, H, W)

    def _object(self, rng: np.random.Generator, shape: str) -> dict[str, Any]:
        """One object: shape, colour, size, start and velocity drawn from ``rng``, positions in closed form."""
        h, w = self.resolution
        side = min(h, w)
        colour = hsv_to_rgb(rng.uniform(), rng.uniform(*SATURATION_RANGE), rng.uniform(*VALUE_RANGE))  # (3,)
        radius = rng.uniform(*self.radius_range) * side
        hy, hx = half_extent(shape, radius)
        low, high = np.array([hy, hx]), np.array([h - hy, w - hx])  # (2,) allowed centre box (y, x)
        start = rng.uniform(low, high)  # (2,)
        speed, angle = rng.uniform(*self.speed_range) * side, rng.uniform(0.0, 2 * np.pi)
        velocity = speed * np.array([np.sin(angle), np.cos(angle)])  # (2,) pixels per frame (y, x)
        t = np.arange(self.num_frames)[:, None]  # (F, 1)
        free = start + velocity * t  # (F, 2) unbounded straight line
        positions = np.stack([reflect(free[:, k], low[k], high[k]) for k in range(2)], axis=1)  # (F, 2)
        return {
            "shape": shape,
            "colour": tuple(float(c) for c in colour),
            "radius": float(radius),
            "half_extent": (float(hy), float(hx)),
            "velocity": (float(velocity[0]), float(velocity[1])),
            "positions": positions,
        }

    def trajectories(self, index: int) -> list[dict[str, Any]]:
        """The objects of clip ``index`` in drawing order (later ones in front), each a dict with

        ``shape`` (name), ``colour`` (r, g, b in [0, 1]), ``radius`` (pixels; the area is ``pi radius^2``),
        ``half_extent`` ((hy, hx) pixels: the centre stays within ``[hy, H - hy] x [hx, W - hx]``), ``velocity``
        ((vy, vx) pixels per frame at frame 0, before any bounce) and ``positions`` ((num_frames, 2) centres (y, x)).
        """
        return self._scene(self._index(index))[1]

    def render(self, index: int) -> np.ndarray:
        """The frames of clip ``index`` as float32 numpy, shape (3, num_frames, H, W), values in [0, 1]."""
        background, objects = self._scene(self._index(index))
        h, w = self.resolution
        video = np.broadcast_to(background[:, None], (3, self.num_frames, h, w))  # (3, F, H, W)
        for obj in objects:
            alpha = coverage(obj["shape"], obj["positions"], obj["radius"], h, w)[None]  # (1, F, H, W)
            colour = np.asarray(obj["colour"])[:, None, None, None]  # (3, 1, 1, 1)
            video = video * (1 - alpha) + colour * alpha
        return np.ascontiguousarray(video, dtype=np.float32)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index = self._index(key)
        video = torch.from_numpy(self.render(index))  # (3, F, H, W)
        label = torch.tensor(index % len(self.shapes), dtype=torch.int64)
        return {"video": video, "label": label}
