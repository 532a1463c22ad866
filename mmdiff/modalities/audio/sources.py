"""Choosing the audio source from a config: the built-in synth, or a folder when ``root`` is given."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


def music_or_folder(
    root: str | None = None,
    sample_rate: int = 16000,
    duration: float = 2.0,
    synth: dict[str, Any] | None = None,
    folder: dict[str, Any] | None = None,
    shards: str | None = None,
) -> Dataset:
    """:class:`AudioFolder` over ``root`` when it is given, else the built-in :class:`MusicSynth`.

    ``synth`` and ``folder`` hold the keyword arguments of each; ``sample_rate`` and ``duration`` are shared, so a
    recipe trains on the synth by default and on the user's audio with a single ``data.root=PATH`` override.
    ``folder.prepare=True`` reads the folder from its prepared store (``folder.prepared_dir``, default in the mmdiff
    cache), building or updating it first.
    """
    if shards:  # WebDataset-style shards from `mmdiff write-shards` (mmdiff.modalities.shards); folder settings apply
        from ..shards import AudioShards

        shard_options = dict(folder or {})
        return AudioShards(
            shards,
            duration=duration,
            sample_rate=sample_rate,
            channels=shard_options.get("channels", 1),
            short_policy=shard_options.get("short_policy", "pad"),
        )
    from .folder import AudioFolder
    from .synth import MusicSynth

    if root:
        options = dict(folder or {})
        prepare, prepared_dir = options.pop("prepare", False), options.pop("prepared_dir", None)
        dataset = AudioFolder(root=root, sample_rate=sample_rate, duration=duration, **options)
        if prepare:  # read from the prepared store (built or updated now); see mmdiff.modalities.prepared
            from .prepared import PreparedAudioFolder

            return PreparedAudioFolder(dataset, prepared_dir)
        return dataset
    return MusicSynth(sample_rate=sample_rate, duration=duration, **dict(synth or {}))
