"""A :class:`VideoFolder` read from a prepared store: every source frame decoded once, resized, stored as uint8.

Why every source frame (with its presentation time) and not frames resampled to the dataset's ``fps``: a folder clip
starts at a continuous random time and takes, for each target ``start + k / fps``, the latest source frame shown at
or before it (:func:`~mmdiff.modalities.video.io.read_clip`). Any source frame can be that frame for some start, so
the same items for the same seeds need all of them; the same store then also serves any ``fps`` and ``num_frames``
(only the frame size is part of its key). Disk use: ``source fps x H x W x 3`` bytes per second of video (a 30 fps
source at 64x64: 369 kB/s, 1.3 GB per hour). Frames are rounded to uint8 after resizing, so items match the folder's
within 0.5/255.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..item_keys import file_item_key
from ..prepared import Decoded, PreparedFolder
from .io import (
    VideoDecodeError,
    _clip_targets,
    _decoding_errors,
    _frame_converter,
    _open,
    _pick,
    _stream_fps,
    _stream_start,
    _timed,
    _tolerance,
    _video_stream,
)

__all__ = ["PreparedVideoFolder", "decode_video"]


def decode_video(path: Path, size: tuple[int, int]) -> Decoded:
    """Every frame of ``path`` resized as :func:`read_clip` resizes it: ``{"frames": uint8 (N, 3, H, W), "times":
    float64 (N,)}`` (seconds from the stream start, as :func:`read_clip` times them), and whether times only grow."""
    convert = _frame_converter(tuple(size))
    times, frames = [], []
    with _open(path) as container:
        stream = _video_stream(container, path)
        t0, step = _stream_start(stream), 1.0 / (_stream_fps(stream) or 1.0)
        for t, frame in _timed(_decoding_errors(path, container.decode(stream)), t0, step):
            times.append(t)
            frames.append(convert(frame).mul(255.0).round().to(torch.uint8).numpy())  # (3, H, W)
    if not frames:
        raise VideoDecodeError(path, "the video stream decodes to zero frames")
    times_array = np.asarray(times, dtype=np.float64)
    monotonic = bool(np.all(np.diff(times_array) >= 0))
    return {"frames": np.stack(frames), "times": times_array}, {"monotonic": monotonic}


class PreparedVideoFolder(PreparedFolder):
    """The items of ``folder`` (a :class:`~mmdiff.modalities.video.VideoFolder`) cut from the prepared store.

    Same keys, same items: the clip start is drawn from the item seed exactly as :func:`read_clip` draws it (the same
    :func:`_clip_targets`, with the header duration and ``short_policy``), and each target time takes the latest
    stored frame at or before it (within the same tolerance), as decoding does; captions and labels are the folder's.
    """

    kind = "video"

    def settings(self) -> dict[str, Any]:
        return {"size": list(self.folder.size)}

    def records(self) -> list[Any]:
        return self.folder.videos

    def decoder(self):
        return partial(decode_video, size=self.folder.size)

    def extent(self, names: list[str]) -> str:
        frames = sum(self.store.index["files"][name]["arrays"]["frames"]["shape"][0] for name in names)
        return f"{frames} frames of {self.folder.size[0]}x{self.folder.size[1]}"

    def _read(self, index: int, start: float | None, generator: torch.Generator | None) -> dict[str, Tensor | str]:
        """One item: the clip of item ``index`` from ``start`` seconds (``None``: drawn from ``generator``)."""
        folder, video = self.folder, self.folder.videos[self.indices[index]]
        policy = "pad" if folder.short_policy == "skip" else folder.short_policy  # as VideoFolder._read
        targets = _clip_targets(video.path, video.duration, folder.num_frames, folder.fps, start, generator, policy)
        tolerance = _tolerance(folder.fps, video.fps)
        stored = self.store.arrays(self.names[index])
        frames, times = stored["frames"], stored["times"]  # (N, 3, H, W) uint8, (N,) float64
        if self.store.attrs(self.names[index])["monotonic"]:
            # the latest frame with time <= target + tolerance; the first frame for a target before it
            picks = np.searchsorted(times, np.asarray(targets) + tolerance, side="right") - 1
            clip = torch.from_numpy(frames[np.maximum(picks, 0)])  # (F, 3, H, W) uint8, a copy
        else:  # out-of-order times: the decoder's own sequential rule
            timed = zip(times.tolist(), range(len(times)), strict=True)
            picked = _pick(timed, targets, tolerance, lambda i: torch.from_numpy(np.array(frames[i])))
            clip = torch.stack(picked)
        video_item = clip.permute(1, 0, 2, 3).float().div_(255.0).contiguous()  # (3, F, H, W) in [0, 1]
        item: dict[str, Tensor | str] = {"video": video_item, "caption": video.caption}
        if folder.labels:
            item["label"] = torch.tensor(video.label, dtype=torch.int64)
        return item

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | str]:
        index, seed = self._key(key)
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        return self._read(index, self.folder._clip_start(self.folder.videos[self.indices[index]], generator), None)

    def item_key(self, index: int, item_seed: int) -> str | None:
        """As :meth:`VideoFolder.item_key` (the same start), with the file's size and ``mtime_ns`` as the store
        entry records them (what its frames were decoded from) and the store's uint8 frames marked, since they
        differ from a decode's by up to 0.5/255."""
        index, _ = self._key(index)
        folder, name = self.folder, self.names[index]
        video = folder.videos[self.indices[index]]
        start = folder._clip_start(video, torch.Generator().manual_seed(int(item_seed)))
        entry = self.store.index["files"][name]
        settings = {**folder._key_settings(), "stored": "uint8"}
        return file_item_key(
            "PreparedVideoFolder", folder.root, video.path, start, settings, (entry["size"], entry["mtime_ns"])
        )

    def num_crops(self, index: int) -> int:
        """As :meth:`VideoFolder.num_crops` (by the header duration)."""
        return self.folder.num_crops(self.indices[range(len(self.names))[index]])

    def crops(self, index: int, positions: Sequence[int]) -> list[dict[str, Tensor | str]]:
        """As :meth:`VideoFolder.crops`: clip ``k`` starts at ``k * num_frames / fps`` seconds (never past the last
        whole clip by the header)."""
        index = range(len(self.names))[index]
        video = self.folder.videos[self.indices[index]]
        last = max(0.0, video.duration - self.folder.clip_seconds)
        return [self._read(index, min(int(k) * self.folder.clip_seconds, last), None) for k in positions]
