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

Every clip also has a caption (:meth:`MovingShapes.caption`) naming true attributes: the shape, the objects' colours
from the named :data:`PALETTE` (``colours=`` draws each object's hue from one named range), how many there are and
how they move at the start (8-way direction, slow/fast), in varied phrasings; :mod:`mmdiff.modalities.video.attributes`
measures the same attributes from pixels, for prompt adherence.

Everything is vectorised over frames in numpy: 16 frames at 32x32 take about half a millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..item_keys import clip_index, settings_hash

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
BACKGROUND_MAX = 0.2  # background channels lie in [0, BACKGROUND_MAX]: dark, whatever the colour
SATURATION_RANGE = (0.5, 1.0)  # object colours: HSV with these saturations and values, any hue
VALUE_RANGE = (0.8, 1.0)

# Named colours: hue ranges (lo, hi) in turns (hue in [0, 1); red wraps through 0). Narrow, disjoint and separated by
# gaps of at least 0.035 turns, so that a colour drawn from one range is still told apart from its neighbours after
# anti-aliasing against the dark background (and, for a model, after generation). The gaps green..blue (cyan) and
# purple..red (magenta) are wide on purpose: there the HSV hues look like neither neighbour.
PALETTE: dict[str, tuple[float, float]] = {
    "red": (-0.025, 0.025),
    "orange": (0.06, 0.10),
    "yellow": (0.14, 0.18),
    "green": (0.27, 0.40),
    "blue": (0.57, 0.67),
    "purple": (0.74, 0.82),
}
# Speed words (fractions of the shorter frame side per frame, the unit of ``speed_range``): the default range
# 1/64..1/16 splits at its geometric middle 1/32; between the two thresholds no speed word is said (never borderline).
SLOW_BELOW = 0.027
FAST_ABOVE = 0.036
SPEED_SPLIT = 1 / 32  # what an estimator uses to call a measured speed slow or fast
# Directions: the 8 sectors of 45 degrees around the velocity's angle (y points down in images; "up" is -y).
DIRECTIONS: tuple[str, ...] = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_CAPTION_STREAM = 0x5EED_CA7  # a separate random stream for phrasing, so that the pixels never depend on it


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


def rgb_to_hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in turns [0, 1) of RGB colours (..., 3), the inverse of :func:`hsv_to_rgb`'s hue (0 where grey)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    top, chroma = rgb.max(axis=-1), np.ptp(rgb, axis=-1)
    safe = np.where(chroma > 0, chroma, 1.0)
    sextant = np.where(top == r, (g - b) / safe, np.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    return np.where(chroma > 0, (sextant / 6.0) % 1.0, 0.0)


def hue_distance(hue: np.ndarray, name: str) -> np.ndarray:
    """Circular distance in turns from ``hue`` to the palette range ``name`` (0 inside the range)."""
    lo, hi = PALETTE[name]
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    offset = np.abs((np.asarray(hue, dtype=np.float64) - centre + 0.5) % 1.0 - 0.5)  # circular |hue - centre|
    return np.maximum(offset - half, 0.0)


def palette_name(hue: float, strict: bool = True) -> str | None:
    """The palette colour whose hue range holds ``hue`` (turns); ``None`` outside every range when ``strict``,
    else the nearest range's name (what an estimator reports for a measured hue)."""
    distances = {name: float(hue_distance(hue, name)) for name in PALETTE}
    name = min(distances, key=distances.get)
    return name if distances[name] == 0.0 or not strict else None


def direction_word(velocity: Sequence[float]) -> str:
    """The 8-way direction (:data:`DIRECTIONS`) of a ``(vy, vx)`` velocity in image axes (y down)."""
    vy, vx = float(velocity[0]), float(velocity[1])
    sector = int(np.round(np.arctan2(-vy, vx) / (np.pi / 4))) % 8
    return DIRECTIONS[sector]


def speed_word(speed: float) -> str | None:
    """``"slow"``, ``"fast"`` or ``None`` (between the thresholds) for a speed in shorter-sides per frame."""
    return "slow" if speed < SLOW_BELOW else "fast" if speed > FAST_ABOVE else None


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
        colours: names from :data:`PALETTE`: each object's hue is drawn uniformly from the range of one of them
            (chosen uniformly), saturation and value as always (bright). ``None`` (default): any hue, the clips of
            earlier versions pixel for pixel; a caption then names an object's colour only when its hue falls inside
            a palette range.
        bounce: True (default): objects bounce off the frame's edges, so a clip may show an object reverse. False:
            each object's path is a straight line that stays inside the frame for the whole clip (its start is
            drawn from the positions that allow it; a speed whose path would not fit is lowered until it does), so
            the direction its caption names holds from the first frame to the last. Captioned data for
            text-to-video uses False (``recipe=video_shapes_text``): with bouncing, about half of the objects of an
            8-frame 16x16 clip reverse before its end and their direction words are true of part of it only.

    Items are ``{"video": (3, num_frames, H, W) float32 in [0, 1], "label": () int64 shape index, "caption": str}``.
    The caption (:meth:`caption`) names true attributes of the clip (:meth:`attributes`) in words that vary: the
    phrasing is drawn from the trainer's item seed when the key is ``(index, item_seed)``, so a model sees many
    phrasings of one clip (the pixels never depend on it), and from ``(seed, index)`` for a plain index.
    """

    reads_files = False  # items are made in memory: trainer.num_workers=auto adds workers only on a GPU

    #: Bump when the rendering code changes what a clip looks like: item keys (and the latents cached by them) of
    #: earlier versions are then not reused.
    render_version = 1

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
        colours: Sequence[str] | None = None,
        bounce: bool = True,
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
        if colours is not None:
            if isinstance(colours, str) or not len(colours):
                raise ValueError(f"colours: need a non-empty sequence of palette names or null, got {colours!r}")
            unknown_colours = [name for name in colours if name not in PALETTE]
            if unknown_colours:
                raise ValueError(f"colours: unknown colour(s) {unknown_colours}; palette: {list(PALETTE)}")
        self.size = int(size)
        self.num_frames = int(num_frames)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.shapes = tuple(shapes)
        self.num_objects = (int(num_objects[0]), int(num_objects[1]))
        self.speed_range = (float(speed_range[0]), float(speed_range[1]))
        self.radius_range = (float(radius_range[0]), float(radius_range[1]))
        self.seed = int(seed)
        self.colours = None if colours is None else tuple(str(name) for name in colours)
        self.bounce = bool(bounce)

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
            f"{self.num_objects[0]}-{self.num_objects[1]} objects, speed {lo:.2g}-{hi:.2g} px/frame"
            f"{'' if self.bounce else ', no bouncing'}, seed {self.seed}"
        )

    def clip_index(self, key) -> int:
        """The clip index in ``[0, size)`` that ``key`` (an index or ``(index, item_seed)``) names."""
        return clip_index(key, self.size)

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
        if self.colours is None:
            hue = rng.uniform()  # any hue: the draw order of earlier versions, so their clips stay the same
        else:
            hue = rng.uniform(*PALETTE[self.colours[int(rng.integers(len(self.colours)))]]) % 1.0
        colour = hsv_to_rgb(hue, rng.uniform(*SATURATION_RANGE), rng.uniform(*VALUE_RANGE))  # (3,)
        radius = rng.uniform(*self.radius_range) * side
        hy, hx = half_extent(shape, radius)
        low, high = np.array([hy, hx]), np.array([h - hy, w - hx])  # (2,) allowed centre box (y, x)
        where = rng.uniform(size=2)  # (2,) the start's place in its allowed interval (same draws as before)
        speed, angle = rng.uniform(*self.speed_range) * side, rng.uniform(0.0, 2 * np.pi)
        velocity = speed * np.array([np.sin(angle), np.cos(angle)])  # (2,) pixels per frame (y, x)
        first, last = low, high  # (2,) the interval the start is drawn from: the whole box when bouncing
        if not self.bounce:
            steps = self.num_frames - 1
            velocity = velocity * min(1.0, np.min((high - low) / np.maximum(np.abs(velocity) * steps, 1e-12)))
            travel = velocity * steps  # (2,) displacement over the clip, slowed to fit inside the box
            first, last = low - np.minimum(travel, 0.0), high - np.maximum(travel, 0.0)  # its path stays inside
        start = first + (last - first) * where  # (2,)
        positions = start + velocity * np.arange(self.num_frames)[:, None]  # (F, 2) a straight line
        if self.bounce:
            positions = np.stack([reflect(positions[:, k], low[k], high[k]) for k in range(2)], axis=1)  # (F, 2)
        return {
            "shape": shape,
            "colour": tuple(float(c) for c in colour),
            "hue": float(hue),
            "radius": float(radius),
            "half_extent": (float(hy), float(hx)),
            "velocity": (float(velocity[0]), float(velocity[1])),
            "positions": positions,
        }

    def trajectories(self, index: int) -> list[dict[str, Any]]:
        """The objects of clip ``index`` in drawing order (later ones in front), each a dict with

        ``shape`` (name), ``colour`` (r, g, b in [0, 1]), ``hue`` (turns, [0, 1)), ``radius`` (pixels; the area is ``pi radius^2``),
        ``half_extent`` ((hy, hx) pixels: the centre stays within ``[hy, H - hy] x [hx, W - hx]``), ``velocity``
        ((vy, vx) pixels per frame at frame 0, before any bounce) and ``positions`` ((num_frames, 2) centres (y, x)).
        """
        return self._scene(self.clip_index(index))[1]

    def render(self, index: int) -> np.ndarray:
        """The frames of clip ``index`` as float32 numpy, shape (3, num_frames, H, W), values in [0, 1]."""
        background, objects = self._scene(self.clip_index(index))
        h, w = self.resolution
        video = np.broadcast_to(background[:, None], (3, self.num_frames, h, w))  # (3, F, H, W)
        for obj in objects:
            alpha = coverage(obj["shape"], obj["positions"], obj["radius"], h, w)[None]  # (1, F, H, W)
            colour = np.asarray(obj["colour"])[:, None, None, None]  # (3, 1, 1, 1)
            video = video * (1 - alpha) + colour * alpha
        return np.ascontiguousarray(video, dtype=np.float32)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index = self.clip_index(key)
        video = torch.from_numpy(self.render(index))  # (3, F, H, W)
        label = torch.tensor(index % len(self.shapes), dtype=torch.int64)
        rng = None
        if isinstance(key, tuple) and len(key) > 1:  # (index, item_seed): the phrasing follows the item seed
            rng = np.random.default_rng(
                np.random.SeedSequence((self.seed, index, _CAPTION_STREAM, int(key[1]) % 2**64))
            )
        return {"video": video, "label": label, "caption": self.caption(index, rng)}

    def item_key(self, index: int, item_seed: int | None = None) -> str:
        """A string naming exactly the pixels of clip ``index`` (:mod:`mmdiff.modalities.item_keys`): the class, a
        hash of every setting the frames depend on and the index. The item seed only phrases the caption, so it is
        not part of the key; ``size`` is not either (clip ``i`` is the same clip in a larger data set)."""
        settings = {
            "version": self.render_version,
            "num_frames": self.num_frames,
            "resolution": self.resolution,
            "shapes": self.shapes,
            "num_objects": self.num_objects,
            "speed_range": self.speed_range,
            "radius_range": self.radius_range,
            "seed": self.seed,
            "colours": self.colours,
        }
        if not self.bounce:  # only when set, so that the keys (and cached latents) of bouncing clips stay the same
            settings["bounce"] = False
        return f"MovingShapes:{settings_hash(settings)}:{self.clip_index(index)}"

    def attributes(self, index: int) -> dict[str, Any]:
        """What clip ``index`` shows, in caption words: ``shape`` (name), ``count`` (objects), and per object in
        drawing order ``colours`` (palette name, ``None`` off the palette), ``directions`` (:data:`DIRECTIONS`, of
        the velocity at frame 0) and ``speeds`` (``"slow"`` / ``"fast"`` / ``None`` between the thresholds)."""
        objects = self.trajectories(index)
        side = min(self.resolution)
        return {
            "shape": objects[0]["shape"],
            "count": len(objects),
            "colours": [palette_name(obj["hue"]) for obj in objects],
            "directions": [direction_word(obj["velocity"]) for obj in objects],
            "speeds": [speed_word(float(np.hypot(*obj["velocity"])) / side) for obj in objects],
        }

    def caption(self, index: int, rng: np.random.Generator | None = None) -> str:
        """A caption of clip ``index`` naming a random subset of its true attributes in one of several phrasings.

        Canonical words are always used for what is named (shape: circle/square/triangle; colours: the palette
        names; counts: one, two, ...; directions: left/right/up/down; speeds: slow/fast), around varied templates,
        verbs (moving, gliding, drifting, ...) and attribute order. ``rng`` draws the phrasing; by default one seeded
        by ``(seed, index)``.
        """
        index = self.clip_index(index)
        if rng is None:
            rng = np.random.default_rng(np.random.SeedSequence((self.seed, index, _CAPTION_STREAM)))
        return _compose_caption(self.attributes(index), rng)


# Caption phrasing. Canonical words (shape, palette colour, number, left/right/up/down, slow/fast) are always the words
# that carry an attribute; only the glue around them varies.
_VERBS = ("moving", "gliding", "drifting", "sliding", "travelling", "heading")
_PLAIN_DIRECTION = {
    "left": ("left", "to the left", "towards the left"),
    "right": ("right", "to the right", "towards the right"),
    "up": ("up", "straight up", "up the frame"),
    "down": ("down", "straight down", "down the frame"),
}
_DIAGONAL = ("{v} and to the {h}", "{v} and {h}", "diagonally {v} and to the {h}", "to the {h} and {v}")
_PREFIXES = ("", "", "a video of ", "a clip of ", "an animation of ", "footage of ")
_SUFFIXES = ("", "", "", " on a dark background", " against a dark backdrop", " over a dark gradient")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _direction_phrase(direction: str, rng: np.random.Generator) -> str:
    """``"up-left"`` -> ``"up and to the left"`` and similar; a plain direction -> ``"left"``, ``"to the left"``..."""
    if direction in _PLAIN_DIRECTION:
        return _pick(rng, _PLAIN_DIRECTION[direction])
    vertical, horizontal = direction.split("-")
    return _pick(rng, _DIAGONAL).format(v=vertical, h=horizontal)


def _with_article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _object_phrase(shape: str, colour, direction: str, speed, rng: np.random.Generator, flags: dict) -> str:
    """One object, e.g. ``"a fast red circle drifting up and to the left"``; ``flags`` says what to name."""
    adjectives = []
    speed_as_pace = speed is not None and flags["speed"] and flags["motion"] and rng.uniform() < 0.4
    if speed is not None and flags["speed"] and not speed_as_pace:
        adjectives.append(speed)
    colour_after = colour is not None and flags["colour"] and rng.uniform() < 0.25  # "a circle in red"
    if colour is not None and flags["colour"] and not colour_after:
        adjectives.append(colour)
    phrase = _with_article(" ".join([*adjectives, shape]))
    if colour_after:
        phrase += f" in {colour}"
    if flags["motion"]:
        phrase += f" {_pick(rng, _VERBS)} {_direction_phrase(direction, rng)}"
        if speed_as_pace:
            phrase += f" at a {speed} pace"
    return phrase


def _compose_caption(attributes: dict[str, Any], rng: np.random.Generator) -> str:
    """A caption from :meth:`MovingShapes.attributes`: random subsets, orders and templates, true words only."""
    shape, count = attributes["shape"], attributes["count"]
    objects = list(zip(attributes["colours"], attributes["directions"], attributes["speeds"]))
    order = rng.permutation(count)  # the order in which objects are named
    flags = {
        "colour": rng.uniform() < 0.85,
        "motion": rng.uniform() < 0.6,
        "speed": rng.uniform() < 0.4,
        "count": rng.uniform() < (0.6 if count > 1 else 0.25),
    }
    number = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    phrases = [_object_phrase(shape, *objects[i], rng, flags) for i in order]
    colours = {colour for colour, _, _ in objects}
    if count == 1:
        body = phrases[0]
        if flags["count"]:  # "one red circle ...": the article becomes the number
            body = "one " + body.split(" ", 1)[1]
    elif flags["count"] and not flags["motion"] and not flags["speed"] and len(colours) == 1 and rng.uniform() < 0.5:
        (colour,) = colours  # "two red circles" (or "two circles" when the colour is not named)
        body = f"{number} {colour + ' ' if colour is not None and flags['colour'] else ''}{shape}s"
    elif all(phrase == _with_article(shape) for phrase in phrases):  # nothing told them apart: "two circles"
        body = f"{number} {shape}s"
    else:
        listed = ", ".join(phrases[:-1]) + (" and " if count == 2 else ", and ") + phrases[-1]
        if flags["count"]:
            body = f"{number} {shape}s" + _pick(rng, (": ", ", ", " - ")) + listed
        else:
            body = listed
    return _pick(rng, _PREFIXES) + body + _pick(rng, _SUFFIXES)
