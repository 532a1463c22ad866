"""Opening media containers with PyAV, shared by the audio and video I/O layers.

Every FFmpeg or OS failure becomes the modality's own error (``AudioDecodeError``, ``VideoDecodeError``), built as
``error(path, reason)``, so the message always names the file and why it could not be read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av


def open_container(path: str | Path, error: Callable[[str | Path, str], Exception]) -> av.container.InputContainer:
    """Open ``path`` for reading, raising ``error(path, reason)`` on any FFmpeg or OS failure."""
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as failure:
        raise error(path, f"FFmpeg could not open it: {getattr(failure, 'strerror', None) or failure}") from failure


def first_stream(
    container: av.container.InputContainer, kind: str, path: str | Path, error: Callable[[str | Path, str], Exception]
):
    """The first ``kind`` ("audio", "video") stream of ``container``; ``error`` lists the stream types if none."""
    streams = getattr(container.streams, kind)
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise error(path, f"no {kind} stream (streams found: {', '.join(kinds)})")
    return streams[0]
