"""An :class:`AudioFolder` read from a prepared store: each file decoded and resampled once, stored as int16 PCM.

Why int16 with a per-file scale rather than float16: the same 2 bytes per sample, but a uniform step of 1/32768 of
full scale (float16 keeps 11 significant bits, so at a typical music level of 0.1-0.5 its step is 2-4 times coarser),
and the most common source, 16-bit PCM at the training rate, round-trips bit for bit. A resampled file can overshoot
full scale (the sinc filter's ringing on a clipped master); instead of clipping it, such a file is stored with a
larger scale (its peak maps to 32767), kept in the index as ``attrs["scale"]`` (seconds of audio: ``attrs["frames"]``).
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
from .io import load_audio

__all__ = ["PreparedAudioFolder", "decode_audio"]

_FULL = 32768.0  # int16 full scale: x = q / 32768 for a file within [-1, 32767/32768]


def to_int16(waveform: np.ndarray) -> tuple[np.ndarray, float]:
    """float ``(C, T)`` -> ``(int16 (C, T), scale)`` with ``waveform ~= q * scale``; ``scale = 1/32768`` unless the
    file goes beyond int16's range, then its peak maps to 32767 (or -32768)."""
    high, low = float(waveform.max(initial=0.0)), float(waveform.min(initial=0.0))
    over = max(1.0, high * _FULL / (_FULL - 1), -low)  # how far beyond int16 full scale, 1 when within
    scale = over / _FULL
    q = np.clip(np.rint(waveform / np.float32(scale)), -_FULL, _FULL - 1).astype(np.int16)
    return q, scale


def decode_audio(path: Path, sample_rate: int, channels: int) -> Decoded:
    """One file as the store keeps it: ``{"audio": int16 (channels, T)}`` at ``sample_rate``, its scale and length."""
    waveform = load_audio(path, sample_rate, channels).numpy()  # (C, T) float32, as AudioFolder decodes it
    if not np.isfinite(waveform).all():
        raise ValueError("it decodes to non-finite samples (NaN or infinity)")
    q, scale = to_int16(waveform)
    return {"audio": q}, {"scale": scale, "frames": int(q.shape[1])}


class PreparedAudioFolder(PreparedFolder):
    """The items of ``folder`` (an :class:`~mmdiff.modalities.audio.AudioFolder`) cut from the prepared store.

    Same keys, same items: ``prepared[i, seed]`` is ``folder[i, seed]`` up to int16 rounding (exact for 16-bit
    sources at the training rate), because the crop start, padding and looping are the folder's own
    :meth:`AudioFolder._fit` applied to the stored waveform, and captions and labels are the folder's.
    """

    kind = "audio"

    def settings(self) -> dict[str, Any]:
        return {"sample_rate": self.folder.sample_rate, "channels": self.folder.channels}

    def records(self) -> list[Any]:
        return self.folder.clips

    def decoder(self):
        return partial(decode_audio, sample_rate=self.folder.sample_rate, channels=self.folder.channels)

    def extent(self, names: list[str]) -> str:
        seconds = sum(self.store.attrs(name)["frames"] for name in names) / self.folder.sample_rate
        return f"{seconds / 3600:.2f} h of audio" if seconds >= 360 else f"{seconds:.1f} s of audio"

    def _stored(self, index: int) -> tuple[Tensor, float]:
        """``(int16 (C, T_file) tensor over the memory map, scale)`` of item ``index``."""
        name = self.names[index]
        return torch.from_numpy(self.store.arrays(name)["audio"]), self.store.attrs(name)["scale"]

    def _item(self, index: int, crop: Tensor, scale: float) -> dict[str, Tensor | str]:
        return self.folder._item(self.indices[index], crop.float().mul_(scale))  # int16 (C, T) -> float32

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor | str]:
        index, seed = self._key(key)
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        waveform, scale = self._stored(index)
        return self._item(index, self.folder._fit(waveform, generator), scale)  # the folder's crop rule

    def item_key(self, index: int, item_seed: int) -> str | None:
        """As :meth:`AudioFolder.item_key`: the crop the folder's rule draws on the stored waveform's length, with
        the file's size and ``mtime_ns`` as the store entry records them (what it was decoded from) and the store's
        int16 samples marked, since they differ from a decode's by the rounding."""
        index, _ = self._key(index)
        folder, name = self.folder, self.names[index]
        start = folder._crop_start(self.store.attrs(name)["frames"], torch.Generator().manual_seed(int(item_seed)))
        settings = {**folder._key_settings(), "stored": "int16"}
        entry = self.store.index["files"][name]
        path = folder.clips[self.indices[index]].path
        return file_item_key(
            "PreparedAudioFolder", folder.root, path, start, settings, (entry["size"], entry["mtime_ns"])
        )

    def num_crops(self, index: int) -> int:
        """As :meth:`AudioFolder.num_crops` (by the header duration)."""
        return self.folder.num_crops(self.indices[range(len(self.names))[index]])

    def crops(self, index: int, positions: Sequence[int]) -> list[dict[str, Tensor | str]]:
        """As :meth:`AudioFolder.crops`: crop ``k`` starts at ``k * duration`` seconds (the last whole crop when the
        file is shorter than its header said), short crops padded or looped."""
        index = range(len(self.names))[index]
        waveform, scale = self._stored(index)  # (C, T_file) int16
        length, n = waveform.shape[1], self.folder.num_samples
        items = []
        for k in positions:
            start = min(int(k) * n, max(0, length - n))
            items.append(self._item(index, self.folder._fit(waveform[:, start : start + n], None), scale))
        return items
