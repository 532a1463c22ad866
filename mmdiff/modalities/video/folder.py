"""A dataset of fixed-length training clips from a folder of video files, in any format FFmpeg reads.

The folder is scanned once at construction from container headers (cheap: no decoding for mp4, mkv, webm, avi, gif);
files that cannot be read, hold no video stream or no frames are skipped with a warning that names each, so one bad
file in a large folder does not stop a run, and a folder with nothing usable stops it at once with a message saying
why. Items are clips of ``num_frames`` frames at ``fps``, sampled by timestamp from a random start drawn from a
per-item seed when the trainer's sampler gives one, so that a resumed run sees the same clips. Evaluation instead cuts
each file into non-overlapping clips (:meth:`VideoFolder.num_crops`, :meth:`VideoFolder.crops`), so that a few long
files give many distinct clips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..folders import SkipFile, caption_summary, format_summary, scan_folder
from ..item_keys import file_item_key
from .io import SHORT_POLICIES, VideoDecodeError, read_clip, video_info

__all__ = ["VIDEO_EXTENSIONS", "VideoFolder"]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".gif", ".m4v")


@dataclass(frozen=True)
class _Video:
    """One usable file: where it is, what its header says, its class index (-1 when unlabeled), its caption."""

    path: Path
    fps: float
    duration: float
    width: int
    height: int
    label: int = -1
    caption: str = ""


class VideoFolder(Dataset):
    """Clips of ``num_frames`` frames at ``fps``, resized and center-cropped to ``size=(H, W)``, from ``root``.

    ``root`` is searched recursively for files with one of ``extensions`` (any case). Items are
    ``{"video": (3, num_frames, H, W) float32 in [0, 1], "caption": str}``, plus ``"label"`` (int64, 0-dim) when
    ``labels="subfolder"``. The caption comes from a ``metadata.csv`` / ``metadata.jsonl`` at the root or a
    ``<stem>.txt`` beside the file (``""`` when it has none; rules in :mod:`mmdiff.modalities.folders`); ``captions``
    lists them per file. With ``labels="subfolder"``: the class of a file is its first sub-folder under ``root``;
    class names are sorted and numbered from 0 (``class_names``, ``num_classes``; 0 when unlabeled). Keys are an
    index or ``(index, item_seed)``: with a seed the clip start comes from ``torch.Generator().manual_seed(item_seed)``
    (deterministic), without one from torch's global RNG. Frames are chosen by timestamp (see
    :func:`~mmdiff.modalities.video.io.read_clip`), so sources of any frame rate, variable ones included, give clips
    at ``fps``.

    Videos shorter than ``num_frames / fps`` seconds: ``short_policy="loop"`` repeats them, ``"pad"`` repeats their
    last frame, ``"skip"`` leaves them out (judged from the header duration). The headers read by the scan are kept
    between runs in the scan cache (:mod:`mmdiff.modalities.folders`); ``scan_cache=False`` reads every header again
    and writes nothing.
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int = 16,
        fps: float = 8.0,
        size: tuple[int, int] | list[int] = (64, 64),
        short_policy: str = "loop",
        extensions: tuple[str, ...] | list[str] = VIDEO_EXTENSIONS,
        labels: str | None = None,
        scan_cache: bool = True,
    ):
        _check_args(num_frames, fps, size, short_policy, labels)
        self.num_frames, self.fps, self.size = int(num_frames), float(fps), (int(size[0]), int(size[1]))
        self.clip_seconds = self.num_frames / self.fps  # the time one clip spans
        self.short_policy, self.labels = short_policy, labels
        scan = scan_folder(
            "VideoFolder", "video", root, extensions, self._probe, labels, header=self._header, scan_cache=scan_cache
        )
        self.root, self.extensions, self.videos = scan.root, scan.extensions, scan.records
        self.scan_report = scan.report  # headers read and taken from the scan cache, skip reasons, time
        self.skipped, self.class_names = scan.skipped, scan.class_names  # skipped: (file, reason) per file left out
        self.num_classes = len(self.class_names)
        self.table = scan.table  # the caption table used, or None

    @property
    def captions(self) -> list[str]:
        """The caption of each file, in item order (``""``: the file has none and trains with the empty caption)."""
        return [video.caption for video in self.videos]

    # --------------------------------------------------------------------------------------------------- scanning

    @staticmethod
    def _header(path: Path) -> dict[str, Any]:
        """What the scan cache keeps of one file: :func:`video_info` (JSON-able); :class:`SkipFile` when unreadable."""
        try:
            return video_info(path)
        except VideoDecodeError as error:
            raise SkipFile(error.reason) from error

    def _probe(self, path: Path, info: dict[str, Any] | None = None) -> _Video:
        """Header of one file (``info``: its :meth:`_header`, read when not given) -> a :class:`_Video` under this
        dataset's settings; raises :class:`SkipFile` when it cannot be used."""
        info = self._header(path) if info is None else info
        if self.short_policy == "skip" and info["duration"] < self.clip_seconds:
            reason = f"{info['duration']:.2f} s is shorter than a clip ({self.num_frames} frames at {self.fps:g} fps)"
            raise SkipFile(reason, warn=False, group=f"shorter than a clip ({self.clip_seconds:g} s)")
        return _Video(path, info["fps"], info["duration"], info["width"], info["height"])

    def summary(self) -> str:
        """One line: files used, skipped (counted by reason), total hours, formats, frame sizes and source frame
        rates with their file counts, classes, captions, and the scan (headers read, taken from the scan cache,
        seconds)."""
        hours = sum(v.duration for v in self.videos) / 3600
        sizes = Counter(f"{v.width}x{v.height}" for v in self.videos).most_common()
        rates = Counter(f"{round(v.fps, 3):g}" for v in self.videos).most_common()
        text = f"VideoFolder {self.root}/: {len(self.videos)} files used, {self.scan_report.skipped_text()}"
        text += f", {hours:.2f} h, {format_summary(v.path for v in self.videos)}"
        text += ", " + ", ".join(f"{size} ({n})" for size, n in sizes)
        text += ", fps " + ", ".join(f"{rate} ({n})" for rate, n in rates)
        text += f", {self.num_classes} classes" if self.labels else ""
        return f"{text}, {caption_summary(self.captions)}, {self.scan_report.text()}"

    # ------------------------------------------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.videos)

    def _read(self, video: _Video, start: float | None, generator: torch.Generator | None) -> dict[str, Tensor | str]:
        """One item: the clip of ``video`` from ``start`` seconds (``None``: a start drawn from ``generator``)."""
        # "skip" files were judged from their header; one whose header overstated its length is padded, not lost
        policy = "pad" if self.short_policy == "skip" else self.short_policy
        clip = read_clip(
            video.path, self.num_frames, self.fps, self.size, start=start, generator=generator, short_policy=policy
        )
        item: dict[str, Tensor | str] = {"video": clip, "caption": video.caption}  # video: (3, num_frames, H, W)
        if self.labels:
            item["label"] = torch.tensor(video.label, dtype=torch.int64)
        return item

    def _clip_start(self, video: _Video, generator: torch.Generator | None) -> float:
        """The seconds a training clip of ``video`` starts at: uniform in ``[0, duration - num_frames / fps]`` by
        the header's duration, from ``generator`` (torch's global RNG when ``None``); 0 for a video shorter than a
        clip. The draw :func:`~mmdiff.modalities.video.io.read_clip` makes for ``start=None``, made here so that
        :meth:`__getitem__`, :meth:`item_key` and the prepared store share it."""
        return float(torch.rand((), generator=generator)) * max(0.0, video.duration - self.clip_seconds)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | str]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        video = self.videos[index]
        return self._read(video, self._clip_start(video, generator), generator)

    #: Bump when decoding or resizing changes the frames a file gives: item keys (and the latents cached by them) of
    #: earlier versions are then not reused.
    decode_version = 1

    def _key_settings(self) -> dict[str, Any]:
        """What a clip's pixels depend on besides the file and the start (part of :meth:`item_key`)."""
        policy = "pad" if self.short_policy == "skip" else self.short_policy  # as _read
        return {
            "version": self.decode_version,
            "frames": self.num_frames,
            "fps": self.fps,
            "size": self.size,
            "policy": policy,
        }

    def item_key(self, index: int, item_seed: int) -> str | None:
        """A string naming exactly the clip of item ``(index, item_seed)`` (:mod:`mmdiff.modalities.item_keys`): the
        file (path under the root, size, ``mtime_ns``: touching or replacing it changes the key), the start
        :meth:`_clip_start` draws from the item seed (as :meth:`__getitem__` draws it) and :meth:`_key_settings`.
        ``None`` when the file cannot be stat-ed."""
        video = self.videos[index]
        start = self._clip_start(video, torch.Generator().manual_seed(int(item_seed)))
        return file_item_key("VideoFolder", self.root, video.path, start, self._key_settings(), None)

    # ------------------------------------------------------------------------------------------- evaluation crops

    def num_crops(self, index: int) -> int:
        """How many non-overlapping clips (``num_frames / fps`` seconds each) file ``index`` holds by its header
        duration; at least 1 (a shorter file is one clip, looped or padded by ``short_policy``)."""
        return max(1, int(self.videos[index].duration / self.clip_seconds + 1e-6))

    def crops(self, index: int, positions: Sequence[int]) -> list[dict[str, Tensor | str]]:
        """Items for clips ``positions`` of file ``index``: clip ``k`` starts at ``k * num_frames / fps`` seconds
        (never past the last whole clip by the header)."""
        video = self.videos[index]
        last = max(0.0, video.duration - self.clip_seconds)
        return [self._read(video, min(int(k) * self.clip_seconds, last), None) for k in positions]

    def __repr__(self) -> str:
        return self.summary()


def _check_args(
    num_frames: int, fps: float, size: tuple[int, int] | list[int], short_policy: str, labels: str | None
) -> None:
    """Clear errors for impossible settings, before any file is touched."""
    if not (int(num_frames) == num_frames and num_frames >= 1):
        raise ValueError(f"VideoFolder: num_frames must be a positive integer, got {num_frames!r}")
    if not fps > 0:
        raise ValueError(f"VideoFolder: fps must be a positive number of frames per second, got {fps!r}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"VideoFolder: size must be (height, width) with both >= 1, got {size!r}")
    if short_policy not in SHORT_POLICIES:
        raise ValueError(f"VideoFolder: short_policy must be one of {SHORT_POLICIES}, got {short_policy!r}")
    if labels not in (None, "subfolder"):
        raise ValueError(f"VideoFolder: labels must be None or 'subfolder', got {labels!r}")
