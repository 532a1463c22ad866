"""Video file input/output through PyAV (FFmpeg): header info, timestamp-sampled clips, mp4/gif writers, frame grids.

Why sample by timestamp: a clip at a target frame rate is a set of times ``start + k / fps``; taking, for each time, the
latest frame shown at or before it (``frame.time``, the presentation timestamp) gives the right frames for any source
rate, for variable-frame-rate files (phone recordings, screen captures) and for containers that only state an average
rate. Counting frames instead would drift on all of those.

Why decode sequentially after one seek: a seek lands on a keyframe at or before the clip start, and decoding forward
from there is the only way to reach inter-coded frames; a clip of 16 frames costs one seek and one short decode run.

Every failure to read a file is a :class:`VideoDecodeError` that names the file and the reason, so that a dataset scan
can skip it with a readable warning and a training run that meets it later stops with a message a user can act on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..containers import first_stream, open_container

__all__ = [
    "SHORT_POLICIES",
    "VideoDecodeError",
    "read_clip",
    "resize_center_crop",
    "video_info",
    "write_frame_grid",
    "write_gif",
    "write_mp4",
]

SHORT_POLICIES = ("loop", "pad", "skip")
_MP4_ENCODER = "libx264"
_CRF = 18  # visually near-lossless H.264; previews and samples, not archives
_GAP = 2  # white pixels between frame-grid cells


class VideoDecodeError(ValueError):
    """A file that cannot be opened or decoded as video; ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"cannot read video from {self.path}: {reason}")


# ------------------------------------------------------------------------------------------------------------ opening


def _open(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning every FFmpeg/OS failure (and an empty file) into :class:`VideoDecodeError`."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    return open_container(path, VideoDecodeError)


def _video_stream(container: av.container.InputContainer, path: str | Path) -> av.VideoStream:
    return first_stream(container, "video", path, VideoDecodeError)


def _stream_start(stream: av.VideoStream) -> float:
    """Presentation time (seconds) of the stream's first frame; frame times are measured from it."""
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return 0.0


def _stream_fps(stream: av.VideoStream) -> float | None:
    """Frames per second from the stream's average rate (the guessed or base rate when that is missing)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def _stream_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    """Duration in seconds from the stream or the container header, ``None`` when neither states one."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:  # mkv/webm state it here only, in microseconds
        return container.duration / av.time_base
    return None


def _decoding_errors(path: str | Path, frames: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    """``frames`` with FFmpeg/OS errors raised mid-stream turned into :class:`VideoDecodeError`."""
    try:
        yield from frames
    except (av.FFmpegError, OSError) as error:
        raise VideoDecodeError(path, f"decoding failed ({error.__class__.__name__}: {error})") from error


def _timed(frames: Iterator[av.VideoFrame], t0: float, step: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """``(seconds from the stream start, frame)``; a frame without a timestamp is placed ``step`` after the last."""
    last = None
    for frame in frames:
        t = frame.time - t0 if frame.time is not None else (0.0 if last is None else last + step)
        last = t
        yield t, frame


# --------------------------------------------------------------------------------------------------------------- info


def _count(path: str | Path, fps: float | None) -> dict[str, Any]:
    """Decode every frame: exact ``frames``, ``duration`` (last frame time + one frame), size and rate."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        fallback_step = 1.0 / fps if fps else 0.0
        n, first, last, size = 0, None, 0.0, (0, 0)
        for t, frame in _timed(_decoding_errors(path, container.decode(stream)), _stream_start(stream), fallback_step):
            n, last, size = n + 1, t, (frame.width, frame.height)
            first = t if first is None else first
    if n == 0:
        raise VideoDecodeError(path, "the video stream decodes to zero frames")
    span = last - first
    fps = fps or ((n - 1) / span if span > 0 else 1.0)
    return {"frames": n, "duration": span + 1.0 / fps, "fps": fps, "width": size[0], "height": size[1]}


def video_info(path: str | Path, count_frames: bool = False) -> dict[str, Any]:
    """``{"fps", "frames", "frames_exact", "duration" (seconds), "width", "height", "codec"}`` of the first video stream.

    Read from the container header (cheap: no decoding) when it states a duration and a frame size. ``fps`` is the
    stream's average rate (its guessed rate when missing). Containers that store no frame count (mkv and webm keep
    only a duration) get ``frames = round(duration * fps)`` with ``frames_exact=False``. The file is decoded to count
    frames when the header has no duration (or says 0 s), no frame rate or no frame size, or ``count_frames=True``;
    then ``frames`` is exact and ``duration`` is the last frame's time plus one frame. Raises
    :class:`VideoDecodeError` for unreadable files, files without a video stream and files with no frames.
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        info = {"fps": _stream_fps(stream), "frames": int(stream.frames or 0), "codec": ctx.name}
        info.update(width=int(ctx.width or 0), height=int(ctx.height or 0))
        duration = _stream_duration(container, stream)
    header_ok = duration and info["fps"] and info["width"] and info["height"]
    if count_frames or not header_ok:
        info.update(_count(path, info["fps"]), frames_exact=True)
        return info
    info["duration"] = duration
    info["frames_exact"] = info["frames"] > 0
    info["frames"] = info["frames"] or max(1, round(duration * info["fps"]))
    return info


# ----------------------------------------------------------------------------------------------------------- resizing


def resize_center_crop(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, 3, H0, W0)`` float -> ``(N, 3, H, W)``: scale the short side to fit (aspect kept), then center-crop.

    Any input size works, odd ones included. Scaling is bilinear with antialiasing (a triangle filter as wide as the
    scale factor when shrinking), so a 1080p frame shrunk to 64x64 does not alias; the output is clamped to [0, 1].
    """
    height, width = size
    h0, w0 = frames.shape[-2:]
    if (h0, w0) != (height, width):
        scale = max(height / h0, width / w0)  # the side that needs more scaling decides; the other is cropped
        new = (max(height, round(h0 * scale)), max(width, round(w0 * scale)))
        frames = F.interpolate(frames, size=new, mode="bilinear", antialias=True, align_corners=False)
    top, left = (frames.shape[-2] - height) // 2, (frames.shape[-1] - width) // 2
    return frames[..., top : top + height, left : left + width].clamp(0.0, 1.0)


def _frame_converter(size: tuple[int, int] | None) -> Callable[[av.VideoFrame], Tensor]:
    """A function: decoded frame -> float ``(3, H, W)`` in [0, 1] at ``size`` (``None``: the frame's own size)."""

    def convert(frame: av.VideoFrame) -> Tensor:
        rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))  # (H0, W0, 3) uint8
        image = rgb.permute(2, 0, 1).float().div(255.0)[None]  # (1, 3, H0, W0)
        return (resize_center_crop(image, size) if size else image)[0]

    return convert


# -------------------------------------------------------------------------------------------------------- clip reading


def _pick(
    timed: Iterator[tuple[float, av.VideoFrame]],
    targets: list[float],
    tolerance: float,
    convert: Callable[[av.VideoFrame], Tensor],
    must_start_by: float | None = None,
) -> list[Tensor] | None:
    """For each target time, the converted latest frame whose time is <= the target (+ ``tolerance``).

    Frames come in presentation order; each frame is converted at most once, when some target picks it, and decoding
    stops once every target has its frame. A target before the first frame gets the first frame, a target after the
    last frame the last one ("pad"). Returns ``None`` when no frame comes, or when the first frame is later than
    ``must_start_by`` (a seek that landed after the clip start).
    """
    order = sorted(range(len(targets)), key=targets.__getitem__)
    picked: list[Tensor | None] = [None] * len(targets)
    held: list | None = None  # [frame, its image or None]: the latest frame at or before the next target
    j = 0
    for t, frame in timed:
        if held is None and must_start_by is not None and t > must_start_by + tolerance:
            return None
        held = held or [frame, None]  # targets before the first frame take the first frame
        while j < len(order) and targets[order[j]] + tolerance < t:  # this frame is past target j: held is its frame
            picked[order[j]] = _image(held, convert)
            j += 1
        if j == len(order):
            return picked  # type: ignore[return-value]
        held = held if held[0] is frame else [frame, None]
    if held is None:
        return None
    for k in order[j:]:  # targets after the last decoded frame
        picked[k] = _image(held, convert)
    return picked  # type: ignore[return-value]


def _image(held: list, convert: Callable[[av.VideoFrame], Tensor]) -> Tensor:
    """The converted image of ``held = [frame, image or None]``, converting on first use."""
    if held[1] is None:
        held[1] = convert(held[0])
    return held[1]


def _seek(container: av.container.InputContainer, stream: av.VideoStream, seconds: float) -> bool:
    """Seek to the keyframe at or before ``seconds`` (stream time); ``False`` when the container cannot seek."""
    try:
        container.seek(int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
    except (av.FFmpegError, OSError):
        return False
    return True


def _decode_once(
    path: str | Path, targets: list[float], tolerance: float, convert: Callable, seek_to: float | None
) -> list[Tensor] | None:
    """One pass of :func:`_pick` over the file, from a seek to ``seek_to`` seconds or from the start (``None``)."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        t0, step = _stream_start(stream), 1.0 / (_stream_fps(stream) or 1.0)
        if seek_to is not None and not _seek(container, stream, t0 + seek_to):
            return None
        timed = _timed(_decoding_errors(path, container.decode(stream)), t0, step)
        return _pick(timed, targets, tolerance, convert, must_start_by=seek_to)


def _decode_targets(
    path: str | Path, targets: list[float], tolerance: float, size: tuple[int, int] | None
) -> list[Tensor]:
    """Frames ``(3, H, W)`` for ``targets`` (seconds from the stream start): a seek near the earliest, then decoding.

    When the container cannot seek, or the seek landed after the earliest target, the file is decoded from the start.
    """
    convert, first = _frame_converter(size), min(targets)
    picked = _decode_once(path, targets, tolerance, convert, seek_to=first) if first > tolerance else None
    if picked is None:
        picked = _decode_once(path, targets, tolerance, convert, seek_to=None)
    if picked is None:
        raise VideoDecodeError(path, "the video stream decodes to zero frames")
    return picked


def _clip_targets(
    path: str | Path,
    duration: float,
    num_frames: int,
    fps: float,
    start: float | None,
    generator: torch.Generator | None,
    policy: str,
) -> list[float]:
    """Target times ``start + k / fps`` (seconds from the stream start), drawn/wrapped/checked as ``policy`` says."""
    span = num_frames / fps
    if start is None:  # uniform in [0, duration - span]; 0 when the video is shorter than the clip
        start = float(torch.rand((), generator=generator)) * max(0.0, duration - span)
    if start < 0:
        raise ValueError(f"{path}: start must be >= 0 seconds, got {start}")
    targets = [start + k / fps for k in range(num_frames)]
    if start + span > duration + 1e-6:
        if policy == "skip":
            raise ValueError(
                f"{path}: the clip [{start:.3f}, {start + span:.3f}) s runs past the video's end ({duration:.3f} s) and "
                "short_policy='skip'"
            )
        if policy == "loop":
            targets = [math.fmod(t, duration) for t in targets]  # wrap time: the clip restarts from frame 0
    return targets  # "pad": targets past the end take the last frame


def _tolerance(fps: float, source_fps: float) -> float:
    """How much later than a target time a frame may be and still count as shown at it (seconds). mkv/webm store
    times in whole milliseconds: a frame at 1/12 s reads 0.083 s. Allow 1 ms, at most 1/10 frame."""
    return min(1e-3, 0.1 / max(fps, source_fps))


def read_clip(
    path: str | Path,
    num_frames: int,
    fps: float,
    size: tuple[int, int] | None = None,
    start: float | None = None,
    generator: torch.Generator | None = None,
    short_policy: str = "loop",
) -> Tensor:
    """Decode ``num_frames`` frames at ``fps`` from ``path``: float32 ``(3, num_frames, H, W)`` in [0, 1].

    Frames are chosen by presentation timestamp: for each target time ``start + k / fps`` (seconds from the first
    frame) the latest frame shown at or before it, so any source rate and variable frame rates give the frames a
    viewer would see. ``start=None`` draws a start uniformly in ``[0, duration - num_frames / fps]`` from
    ``generator`` (torch's global RNG when ``None``); 0 when the video is shorter than the clip. ``size=(H, W)``
    scales each frame so that it covers ``H x W`` (aspect kept, antialiased bilinear) and center-crops it; ``None``
    keeps the source size.

    When the clip runs past the end of the video: ``short_policy="loop"`` wraps time (the video repeats), ``"pad"``
    repeats the last frame, ``"skip"`` raises ``ValueError`` (so a caller can leave the file out). Raises
    :class:`VideoDecodeError` for unreadable files, files without a video stream and files with no frames.
    """
    _check_clip_args(num_frames, fps, size, short_policy)
    num_frames, size = int(num_frames), (int(size[0]), int(size[1])) if size is not None else None
    info = video_info(path)
    targets = _clip_targets(path, info["duration"], num_frames, fps, start, generator, short_policy)
    tolerance = _tolerance(fps, info["fps"])
    frames = _decode_targets(path, targets, tolerance, size)  # num_frames x (3, H, W)
    return torch.stack(frames, dim=1).contiguous()  # (3, num_frames, H, W)


def _check_clip_args(num_frames: int, fps: float, size: tuple[int, int] | None, short_policy: str) -> None:
    """Clear errors for impossible clip settings, before the file is touched."""
    if not (int(num_frames) == num_frames and num_frames >= 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (height, width) with both >= 1, got {size!r}")
    if short_policy not in SHORT_POLICIES:
        raise ValueError(f"short_policy must be one of {SHORT_POLICIES}, got {short_policy!r}")


# ------------------------------------------------------------------------------------------------------------ writing


def _as_uint8(frames: Tensor | np.ndarray) -> np.ndarray:
    """``(3, F, H, W)`` float in [0, 1] or uint8 ``(F, H, W, 3)`` -> uint8 ``(F, H, W, 3)`` (NaN -> 0, clipped)."""
    if isinstance(frames, Tensor):
        frames = frames.detach().cpu().numpy()
    array = np.asarray(frames)
    if array.dtype == np.uint8:
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"uint8 frames must have shape (frames, height, width, 3), got {array.shape}")
        return np.ascontiguousarray(array)
    if array.ndim != 4 or array.shape[0] != 3:
        raise ValueError(f"float frames must have shape (3, frames, height, width), got {array.shape}")
    array = np.clip(np.nan_to_num(array.astype(np.float32), nan=0.0), 0.0, 1.0)
    return np.ascontiguousarray(np.round(array * 255.0).astype(np.uint8).transpose(1, 2, 3, 0))  # (F, H, W, 3)


def _checked(frames: Tensor | np.ndarray, fps: float) -> np.ndarray:
    """uint8 ``(F, H, W, 3)`` with at least one frame, after checking ``fps``."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    array = _as_uint8(frames)
    if min(array.shape[:3]) < 1:
        raise ValueError(f"need at least one frame of at least 1x1 pixels, got (F, H, W) = {array.shape[:3]}")
    return array


def _pad_even(array: np.ndarray) -> np.ndarray:
    """``(F, H, W, 3)`` -> even H and W by repeating the last row/column (yuv420p subsamples chroma 2x2)."""
    pad_h, pad_w = array.shape[1] % 2, array.shape[2] % 2
    if not (pad_h or pad_w):
        return array
    return np.pad(array, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def write_mp4(path: str | Path, frames: Tensor | np.ndarray, fps: float) -> Path:
    """Write ``frames`` as H.264 (libx264, yuv420p, CRF 18) in an mp4 at exactly ``fps``; returns the path.

    ``frames``: float ``(3, F, H, W)`` in [0, 1] (clipped; NaN written as black) or uint8 ``(F, H, W, 3)``. The rate
    is ``Fraction(fps).limit_denominator(1001)`` (so 30000/1001 stays NTSC) and frame ``i`` has pts ``i`` in time base
    ``1 / rate``: a reader sees exactly ``F`` frames at ``fps``. yuv420p needs an even width and height, so an odd
    size is PADDED to the next even one by repeating the last row and/or column (never rescaled): a ``(3, F, 25, 33)``
    clip is written as ``26 x 34`` (H x W) and reads back at that size. Parent folders are created.
    """
    path, array = Path(path), _pad_even(_checked(frames, fps))  # (F, H', W', 3), H' and W' even
    rate = Fraction(fps).limit_denominator(1001)
    time_base = 1 / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(_MP4_ENCODER, rate=rate, options={"crf": str(_CRF)})
        stream.width, stream.height, stream.pix_fmt = array.shape[2], array.shape[1], "yuv420p"
        stream.codec_context.time_base = time_base
        for index, image in enumerate(array):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")  # PyAV converts to yuv420p on encode
            frame.pts, frame.time_base = index, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):  # flush the encoder's delayed frames
            container.mux(packet)
    return path


def write_gif(path: str | Path, frames: Tensor | np.ndarray, fps: float) -> Path:
    """Write ``frames`` (as for :func:`write_mp4`) as a looping GIF with Pillow; returns the path.

    Each frame lasts ``round(1000 / fps)`` ms, but GIF stores centiseconds, so a reader sees e.g. 12 fps as 80 ms
    (12.5 fps); each frame gets its own 256-colour palette. Pillow merges consecutive identical frames into one longer
    frame, so the frame count read back can be smaller. Parent folders are created.
    """
    path, array = Path(path), _checked(frames, fps)  # (F, H, W, 3)
    images = [Image.fromarray(image) for image in array]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def write_frame_grid(
    path: str | Path, clips: list[Tensor] | Tensor, max_frames: int = 8, captions: list[str] | None = None
) -> Path:
    """A PNG preview: one row per clip ``(3, F, H, W)`` in [0, 1], up to ``max_frames`` evenly spaced frames a row,
    each row headed by its caption (class, seed) when ``captions`` are given.

    Cells are separated (and framed) by 2 px white gaps; clips of different sizes or lengths share the grid, each
    frame placed at the top-left of a cell as large as the largest frame. Parent folders are created.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    rows = [_as_uint8(clip) for clip in clips]  # each (F, H, W, 3)
    if not rows:
        raise ValueError("write_frame_grid needs at least one clip")
    cell_h, cell_w = max(r.shape[1] for r in rows), max(r.shape[2] for r in rows)
    columns = min(max_frames, max(r.shape[0] for r in rows))
    lines = [str(c).splitlines() for c in captions] if captions else []
    margin = 6 * max((len(line) for caption in lines for line in caption), default=0) + (2 * _GAP if lines else 0)
    grid = np.full((_GAP + len(rows) * (cell_h + _GAP), margin + _GAP + columns * (cell_w + _GAP), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        picks = np.unique(np.linspace(0, row.shape[0] - 1, min(max_frames, row.shape[0])).round().astype(int))
        for j, frame in enumerate(row[picks]):
            top, left = _GAP + i * (cell_h + _GAP), margin + _GAP + j * (cell_w + _GAP)
            grid[top : top + frame.shape[0], left : left + frame.shape[1]] = frame
    image = Image.fromarray(grid)
    if lines:
        from PIL import ImageDraw

        draw = ImageDraw.Draw(image)
        for i, caption in enumerate(lines):
            draw.multiline_text((_GAP, _GAP + i * (cell_h + _GAP)), "\n".join(caption), fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
