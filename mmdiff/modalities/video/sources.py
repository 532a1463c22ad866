"""Choosing the video source from a config: the built-in moving shapes, or a folder when ``root`` is given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset


def shapes_or_folder(
    root: str | None = None,
    num_frames: int = 16,
    resolution: Sequence[int] = (32, 32),
    fps: float = 8.0,
    synth: dict[str, Any] | None = None,
    folder: dict[str, Any] | None = None,
    shards: str | None = None,
) -> Dataset:
    """:class:`VideoFolder` over ``root`` when it is given, else the built-in :class:`MovingShapes`.

    ``num_frames``, ``resolution`` (H, W) and ``fps`` are shared, so a recipe trains on the synthetic clips by default
    and on the user's videos with a single ``data.root=PATH`` override. ``folder.prepare=True`` reads the folder from
    its prepared store (``folder.prepared_dir``, default in the mmdiff cache), building or updating it first.
    """
    if shards:  # WebDataset-style shards from `mmdiff write-shards` (mmdiff.modalities.shards); folder settings apply
        from ..shards import VideoShards

        shard_options = dict(folder or {})
        return VideoShards(
            shards,
            num_frames=num_frames,
            fps=fps,
            size=tuple(resolution),
            short_policy=shard_options.get("short_policy", "loop"),
        )
    from .folder import VideoFolder
    from .synth import MovingShapes

    if root:
        options = dict(folder or {})
        prepare, prepared_dir = options.pop("prepare", False), options.pop("prepared_dir", None)
        dataset = VideoFolder(root=root, num_frames=num_frames, fps=fps, size=tuple(resolution), **options)
        if prepare:  # read from the prepared store (built or updated now); see mmdiff.modalities.prepared
            from .prepared import PreparedVideoFolder

            return PreparedVideoFolder(dataset, prepared_dir)
        return dataset
    return MovingShapes(num_frames=num_frames, resolution=tuple(resolution), **dict(synth or {}))
