"""Choosing the audio-video source from a config: the built-in sounding shapes, or a folder when ``root`` is given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset


def sounding_shapes_or_folder(
    root: str | None = None,
    num_frames: int = 16,
    resolution: Sequence[int] = (16, 16),
    fps: float = 8.0,
    sample_rate: int = 16000,
    channels: int = 1,
    synth: dict[str, Any] | None = None,
    folder: dict[str, Any] | None = None,
) -> Dataset:
    """:class:`~mmdiff.modalities.av.folder.AudioVideoFolder` over ``root`` when it is given, else the built-in
    :class:`~mmdiff.modalities.av.SoundingShapes`.

    ``num_frames``, ``resolution`` (H, W), ``fps``, ``sample_rate`` and ``channels`` are shared, so a recipe trains on
    the synthetic clips by default and on the user's videos with sound with a single ``data.root=PATH`` override;
    ``synth`` holds the other keyword arguments of :class:`SoundingShapes`, ``folder`` those of the folder.
    """
    if root:
        from .folder import AudioVideoFolder  # imported only when a folder is asked for

        return AudioVideoFolder(
            root=root,
            num_frames=num_frames,
            fps=fps,
            size=tuple(resolution),
            sample_rate=sample_rate,
            channels=channels,
            **dict(folder or {}),
        )
    from .synth import SoundingShapes

    return SoundingShapes(
        num_frames=num_frames,
        resolution=tuple(resolution),
        fps=fps,
        sample_rate=sample_rate,
        channels=channels,
        **dict(synth or {}),
    )
