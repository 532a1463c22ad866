"""Item keys: strings that name exactly the media of one training item, for caches of what is computed from it.

A dataset may offer ``item_key(index, item_seed) -> str | None`` (see :class:`mmdiff.data.SeededDataset`): equal keys
promise equal media, so whatever is computed from the media alone (the latents of :mod:`mmdiff.latent.cache`) can be
reused across epochs and runs. A key is made of what the media depends on and nothing else:

- built-in synths (:class:`~mmdiff.modalities.audio.MusicSynth`, :class:`~mmdiff.modalities.video.MovingShapes`):
  the class, :func:`settings_hash` of every setting that changes the rendered media, and the index;
- folders and their prepared stores: :func:`file_item_key`, the file's path relative to the root, its size and
  ``mtime_ns`` (as ``make``, rsync and the prepared store judge a changed file), the crop the item seed draws and
  the decoding settings.

Keys are compared as whole strings (caches hash them), so their parts are written as JSON: no separator can be
confused with a character of a file name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["clip_index", "file_item_key", "settings_hash"]


def _plain(value: Any, where: str = "settings") -> Any:
    """``value`` as plain JSON values (tuples -> lists, numpy numbers -> Python ones, paths -> strings); a
    ``TypeError`` naming the setting for anything else, so that no setting is hashed by an unstable ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: cannot hash a {type(value).__name__} into an item key (plain values only)")


def clip_index(key: Any, size: int) -> int:
    """The clip a built-in synth's key names, in ``[0, size)``: ``key`` is an index or an ``(index, item_seed)``
    tuple (the synths render the same clip for every item seed), negative indices count from the end; an
    ``IndexError`` naming the index for anything outside ``[-size, size)``."""
    index = int(key[0] if isinstance(key, tuple) else key)
    if not -size <= index < size:
        raise IndexError(f"clip index {index} out of range for {size} clips")
    return index % size


def settings_hash(settings: Mapping[str, Any]) -> str:
    """A short stable name of ``settings`` (JSON-able values): the first 16 hex digits of the SHA-1 of their JSON
    with sorted keys. Tuples and lists hash alike (a config's list equals the class's tuple)."""
    text = json.dumps(_plain(settings), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def file_item_key(
    kind: str, root: str | Path, path: str | Path, crop: Any, settings: Mapping[str, Any], stamp: tuple[int, int] | None
) -> str | None:
    """The key of a crop of one file: ``[kind, settings_hash(settings), relative path, size, mtime_ns, crop]`` as
    JSON. ``stamp``: ``(size, mtime_ns)`` when known (a prepared store's entry), else read from the file now;
    ``None`` when the file cannot be stat-ed (the item is then not cacheable)."""
    path = Path(path)
    if stamp is None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
    try:
        relative = path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:  # not under root (a link out of it): the absolute path names it
        relative = str(path.resolve())
    return json.dumps([kind, settings_hash(settings), relative, int(stamp[0]), int(stamp[1]), _plain(crop, "crop")])
