"""The latent cache: the codec's latents of each training item, computed once and reused across epochs and runs.

Encoding through a frozen autoencoder is the most expensive step of a latent training step on a CPU (video: 0.93 s per
batch of 8 clips of 16x64x64), and it gives the same latents for the same media every time (the codec encodes the
posterior mode). A dataset that can name an item's media (``item_key``, :mod:`mmdiff.modalities.item_keys`) lets
:class:`~mmdiff.latent.LatentAdapter` (``cache=True``) keep those latents on disk:

    cache_root() / "latents" / <fingerprint> / <sha1(key)[:2]> / <sha1(key)>.npy

one float32 ``.npy`` per item (``np.save``; read with ``allow_pickle=False``, so nothing read can run code), the
codec's output *before* the latent statistics are applied (so re-measured statistics reuse it). The fingerprint
(:func:`cache_fingerprint`) covers the codec's weights and the media adapter's settings.

When is a cached latent not used? A new key: the file was touched or replaced (size, ``mtime_ns``), another crop,
other decoding or synth settings. A new fingerprint: another autoencoder (retrained, another checkpoint, a diffusers
folder with other weights) or other media settings (mel bins, FFT, hop, frequency range, frame size ...). Nothing is
ever deleted: an old fingerprint's folder stays until removed by hand (``rm -r ~/.cache/mmdiff/latents``), which is
always safe. A file that cannot be read is a miss (with a warning naming it) and is written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..modalities.cache import cache_root

__all__ = ["LatentCache", "cache_fingerprint", "default_cache_dir"]

log = logging.getLogger("mmdiff.latent")

#: Bump when the cache's file layout changes: earlier folders are then left unused.
VERSION = 1


class LatentCache:
    """One fingerprint's folder of latents: :meth:`get` and :meth:`put` by item key; ``hits`` and ``misses`` count
    the keyed items asked for (an empty key is neither: not cacheable)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        self.hits, self.misses = 0, 0
        self._write_failed = False  # warn once when the folder cannot be written

    def path(self, key: str) -> Path:
        """Where the latent of ``key`` lives: ``folder / sha1[:2] / sha1.npy`` (256 sub-folders keep each small)."""
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def get(self, keys: Sequence[str]) -> list[Tensor | None]:
        """The cached latent ``(c, *s)`` float32 of each key, or ``None`` (not cached, unreadable, or an empty key)."""
        out: list[Tensor | None] = []
        for key in keys:
            if not key:
                out.append(None)
                continue
            out.append(self._read(self.path(key)))
            if out[-1] is None:
                self.misses += 1
            else:
                self.hits += 1
        return out

    def _read(self, path: Path) -> Tensor | None:
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as error:  # truncated, not .npy, an object array ...
            log.warning("latent cache: %s cannot be read (%s); encoding the item again", path, error)
            return None
        if array.dtype != np.float32 or array.ndim < 1:
            log.warning(
                "latent cache: %s holds %s %s, expected float32 latents; encoding again", path, array.dtype, array.shape
            )
            return None
        return torch.from_numpy(array)

    def put(self, keys: Sequence[str], latents: Tensor) -> None:
        """Store ``latents[i]`` (``(B, c, *s)``) under ``keys[i]``; empty keys are skipped. Each file is written to a
        temporary name and moved into place (``os.replace``), so a reader never sees half a file, whichever process
        writes. A folder that cannot be written is a warning (once) and training goes on uncached."""
        arrays = latents.detach().float().cpu().numpy()  # (B, c, *s)
        for key, array in zip(keys, arrays, strict=True):
            if not key:
                continue
            path = self.path(key)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as f:
                    np.save(f, np.ascontiguousarray(array), allow_pickle=False)
                os.replace(tmp, path)
            except OSError as error:
                tmp.unlink(missing_ok=True)
                if not self._write_failed:
                    log.warning("latent cache: cannot write %s (%s); latents are not cached", path, error)
                    self._write_failed = True


def _plain(value: Any) -> bool:
    """A number, string, bool or None, or a tuple/list of them: a setting that can be hashed as JSON."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, list | tuple) and all(_plain(v) for v in value)


def _hash_tensors(digest: Any, state: dict[str, Tensor]) -> None:
    """Feed each tensor's name, dtype, shape and bytes to ``digest``, in sorted name order."""
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def _settings(obj: Any) -> tuple[dict[str, Any], dict[str, nn.Module]]:
    """``obj``'s public plain attributes (numbers, strings, bools, tuples/lists of them) and its module attributes."""
    plain, modules = {}, {}
    for name, value in sorted(vars(obj).items()):
        if name.startswith("_") or name == "training":
            continue
        if _plain(value):
            plain[name] = list(value) if isinstance(value, tuple) else value
        elif isinstance(value, nn.Module):
            modules[name] = value
    return plain, modules


def cache_fingerprint(codec: nn.Module, media: Any) -> str:
    """The first 16 hex digits of a SHA-1 over the codec (class, plain settings, every tensor of its state_dict in
    name order) and the media adapter (class, plain settings, and the tensors of its modules: a mel filterbank holds
    ``f_min``/``f_max``, which the adapter keeps nowhere else). A retrained autoencoder or other mel settings give
    another fingerprint, hence another folder; a media module that only decodes (a vocoder) is hashed too, which
    can only make the cache miss, never reuse a stale latent."""
    digest = hashlib.sha1(f"latent-cache-v{VERSION}|".encode())
    for role, obj in (("codec", codec), ("media", media)):
        plain, modules = _settings(obj)
        digest.update(json.dumps([role, type(obj).__module__, type(obj).__qualname__, plain], sort_keys=True).encode())
        if isinstance(obj, nn.Module):  # its submodules are in its state_dict
            _hash_tensors(digest, obj.state_dict())
            continue
        for name, module in modules.items():
            _hash_tensors(digest, {f"{name}.{k}": v for k, v in module.state_dict().items()})
    return digest.hexdigest()[:16]


def default_cache_dir(codec: nn.Module, media: Any) -> Path:
    """``cache_root() / "latents" / cache_fingerprint(codec, media)``."""
    return cache_root() / "latents" / cache_fingerprint(codec, media)
