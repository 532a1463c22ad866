"""Latent diffusion by composition: a media adapter followed by an autoencoder, seen by the core as one adapter.

``media -> media adapter.encode -> codec.encode -> (z - shift) / scale -> core`` and back through
``z * scale + shift -> codec.decode -> media adapter.decode``, as in latent diffusion (Rombach et al. 2022, "High-
Resolution Image Synthesis with Latent Diffusion Models"; Stable Audio, Evans et al. 2024). The core, the samplers,
guidance, editing and the media adapters do not change: SDEdit and ``keep=`` work on latents, the media adapter's
known-part conditions (video's known frames for image-to-video) are made from latents, and ``range_mask`` maps a
media range to the latent positions that lie wholly inside it.

Per-channel latent statistics (``shift`` = mean, ``scale`` = standard deviation) are measured on the training data
when a run starts (:meth:`LatentAdapter.prepare_run`) and stored with the run, with a copy of the codec, in
``RUN/autoencoder/``; the run's config carries both, so ``mmdiff.load(RUN)`` needs nothing outside the run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import first_items
from ..modality import ModalityAdapter
from .cache import LatentCache, default_cache_dir
from .codec import CODEC_DIR, decode_in_chunks, encode_in_chunks, load_codec, store_codec

log = logging.getLogger("mmdiff.latent")

#: The file in ``RUN/autoencoder/`` that holds the latent statistics measured at the run's start.
STATS_FILE = "latent_stats.json"


class LatentAdapter(ModalityAdapter):
    """A media adapter seen through an autoencoder (see the module docstring).

    Args:
        media: the media adapter (audio log-mels, video pixels, waveforms ...), built by Hydra from its own node.
        autoencoder: the codec's path: an mmdiff autoencoder run (``mmdiff train recipe=audio_vae``), one of its
            checkpoint folders, or a local diffusers autoencoder folder (:func:`mmdiff.latent.codec.load_codec`).
        latent_channels: the latent channels the network is built for (``autoencoder.latent_channels`` of the
            recipes): checked against the codec, so a mismatch is named here rather than deep in the network.
        stats: ``{"shift": [...], "scale": [...]}`` per latent channel; ``None`` until measured at the run's start.
        stats_items: training items the statistics are measured on.
        chunk: samples per codec call (bounds memory when encoding a large batch).
        cache: keep each training item's latents on disk and reuse them across epochs and runs
            (:mod:`mmdiff.latent.cache`) when the dataset names its items (``item_key``: the synths, folders and
            prepared stores; shards do not). Hits and misses: :meth:`cache_stats`, and an INFO line on
            ``mmdiff.latent`` every 1000 training batches ("latent cache: N hits, M misses so far").
    """

    def __init__(
        self,
        media: ModalityAdapter,
        autoencoder: str,
        latent_channels: int | None = None,
        stats: Mapping[str, Any] | None = None,
        stats_items: int = 256,
        chunk: int = 16,
        cache: bool = False,
    ):
        if not isinstance(media, ModalityAdapter):
            raise ValueError(f"adapter.media: expected a modality adapter, got {type(media).__name__}")
        if stats_items < 1 or chunk < 1:
            raise ValueError(f"adapter.stats_items and adapter.chunk must be >= 1, got {stats_items}, {chunk}")
        self.media, self.autoencoder, self.latent_channels = media, str(autoencoder), latent_channels
        self._codec = None  # loaded on first use: a resumed run loads the copy it keeps, not autoencoder.path
        self.stats_items, self.chunk = stats_items, chunk
        self.cache = bool(cache)
        self._latent_cache: LatentCache | None = None  # opened on first use, for the codec it was opened for
        self._cache_codec: Any = None
        self._cached_calls = 0  # encode calls that used the cache (for the periodic log line)
        self.shift: Tensor | None = None  # (latent_channels,)
        self.scale: Tensor | None = None  # (latent_channels,)
        if stats is not None:
            self.set_stats(stats)

    def __getattr__(self, name: str) -> Any:
        """Media attributes (``sample_rate``, ``fps``, ``resolution``, ``waveform_to_mel`` ...) are the media
        adapter's: evaluators and previews that work on decoded media read them from a latent adapter as from the
        adapter it wraps."""
        if name.startswith("_") or name == "media":
            raise AttributeError(name)
        return getattr(self.media, name)

    @property
    def noise_prior(self) -> Any:
        """The media adapter's noise prior, applied to the latents: a video autoencoder keeps the frame axis (dim 2),
        so a clip's latent frames share noise as its pixel frames would."""
        return self.media.noise_prior

    @property
    def codec(self) -> Any:
        """The frozen autoencoder (:func:`~mmdiff.latent.codec.load_codec` of ``autoencoder``), loaded once."""
        if self._codec is None:
            self._use_codec(self.autoencoder)
        return self._codec

    def _use_codec(self, path: str | Path) -> None:
        codec = load_codec(path)
        if self.latent_channels is not None and self.latent_channels != codec.latent_channels:
            raise ValueError(
                f"autoencoder.latent_channels={self.latent_channels}, but the autoencoder at {path} has "
                f"{codec.latent_channels} latent channels: set autoencoder.latent_channels={codec.latent_channels}"
            )
        self._codec = codec

    # ---- latent statistics -------------------------------------------------------------------------------------
    def set_stats(self, stats: Mapping[str, Any]) -> None:
        """Use per-channel ``shift`` and ``scale`` (one number per latent channel; scale > 0)."""
        channels = self.codec.latent_channels
        try:
            shift = torch.as_tensor(list(stats["shift"]), dtype=torch.float32)
            scale = torch.as_tensor(list(stats["scale"]), dtype=torch.float32)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"adapter.stats: expected {{shift: [...], scale: [...]}}, got {stats!r} ({e})") from None
        if shift.shape != (channels,) or scale.shape != (channels,) or not bool((scale > 0).all()):
            raise ValueError(
                f"adapter.stats: expected {channels} shifts and {channels} positive scales (one per latent channel), "
                f"got {len(shift)} and {list(scale)}"
            )
        self.shift, self.scale = shift, scale

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        if self.shift is None or self.scale is None:
            raise RuntimeError(
                "latent statistics are not set: the trainer measures them when a run starts (prepare_run); from "
                "Python, call adapter.prepare_run(dataset, run_dir) or pass stats={'shift': [...], 'scale': [...]}"
            )
        view = (1, -1, *([1] * (like.ndim - 2)))
        return self.shift.to(like.device).reshape(view), self.scale.to(like.device).reshape(view)

    def measure_stats(self, dataset: Any, seed: int = 0, device: Any = "cpu") -> dict[str, Any]:
        """Per-channel mean and standard deviation of the codec's latents over the first ``stats_items`` training
        items (item ``i`` with seed ``seed + i``, as a fixed sample of the data)."""
        from torch.utils.data import default_collate

        items = first_items(dataset, self.stats_items, seed)
        n = len(items)
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, n, self.chunk):
            part = items[start : start + self.chunk]
            batch = {
                k: v.to(device) if torch.is_tensor(v) else v for k, v in default_collate(part).items()
            }  # media-shaped
            gens = [torch.Generator().manual_seed(seed + start + i) for i in range(len(part))]
            x, _ = self.media.encode(batch, generator=gens)
            z = encode_in_chunks(self.codec, x, self.chunk).double()  # (b, c, *s)
            dims = [d for d in range(z.ndim) if d != 1]
            total = total + z.sum(dims)
            total_sq = total_sq + (z * z).sum(dims)
            count += z.numel() // z.shape[1]
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
        return {"shift": [float(v) for v in mean], "scale": [float(v) for v in std], "items": n}

    def prepare_run(self, dataset: Any, run_dir: str | Path, fresh: bool = True, device: Any = "cpu") -> dict:
        """Keep the codec and the latent statistics with the run in ``run_dir/autoencoder/`` and use them.

        A fresh run copies the codec there and measures the statistics on ``dataset``; a resumed run (``fresh=False``)
        reads what its start stored, so the latents it trains on are the same even if the original autoencoder
        folder changed since. Returns ``{"settings": {...}, "assets": {...}}``: adapter config keys to record in the
        run's config (``stats``) and those that name a file of the run (``autoencoder``: ``"autoencoder"``).
        """
        folder = Path(run_dir) / CODEC_DIR
        stored = folder / STATS_FILE
        if fresh or not stored.is_file():
            tmp = Path(run_dir) / f".{CODEC_DIR}_tmp_{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            store_codec(self.autoencoder, tmp)
            stats = self.measure_stats(dataset, device=device)
            (tmp / STATS_FILE).write_text(json.dumps({**stats, "source": self.autoencoder}, indent=1))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
            log.info(
                "latent statistics over %d items: shift %s, scale %s (stored in %s)",
                stats["items"],
                _short(stats["shift"]),
                _short(stats["scale"]),
                folder,
            )
        else:
            stats = json.loads(stored.read_text())
            log.info("latent run: using the autoencoder and statistics stored in %s", folder)
            self._use_codec(folder)
        self.set_stats(stats)
        self.autoencoder = str(folder)
        return {
            "settings": {"stats": {"shift": stats["shift"], "scale": stats["scale"]}},
            "assets": {"autoencoder": CODEC_DIR},
        }

    # ---- latents -----------------------------------------------------------------------------------------------
    def to_latent(self, x: Tensor) -> Tensor:
        """Media-adapter tensors ``(B, C, *S)`` -> normalised latents ``(B, c, *s)``."""
        z = encode_in_chunks(self.codec, x, self.chunk)
        shift, scale = self._stats(z)
        return (z - shift) / scale

    def from_latent(self, z: Tensor) -> Tensor:
        """Normalised latents ``(B, c, *s)`` -> media-adapter tensors ``(B, C, *S)``."""
        shift, scale = self._stats(z)
        return decode_in_chunks(self.codec, z.float() * scale + shift, self.chunk)

    # ---- the adapter protocol ----------------------------------------------------------------------------------
    @property
    def uses_item_keys(self) -> bool:
        """Whether the trainer should pass the items' keys (``batch["_keys"]``, the dataset's ``item_key``)."""
        return self.cache

    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Media -> normalised latents and the known-part conditions. With ``cache=True`` and ``batch["_keys"]``
        (one item key per sample, ``""``: none; popped from ``batch``), cached latents are reused and the others
        encoded together and stored: the result is the uncached one (the media adapter still runs on the whole
        batch, so each sample's generator is drawn from exactly as without the cache)."""
        keys = batch.pop("_keys", None)
        x, _ = self.media.encode(batch, generator)  # its own conditions are remade from the latents below
        if self.cache and keys is not None and any(keys):
            z = self._cached_latents(x, list(keys))
            shift, scale = self._stats(z)
            z = (z - shift) / scale  # as to_latent
        else:
            z = self.to_latent(x)
        return z, self.training_known(z, generator)  # the media's known parts, made from the latents

    def decode(self, x: Tensor) -> list[Any]:
        return self.media.decode(self.from_latent(x))

    # ---- the latent cache --------------------------------------------------------------------------------------
    def cache_stats(self) -> tuple[int, int]:
        """``(hits, misses)`` of the latent cache in this process so far (``(0, 0)`` before its first use)."""
        cache = self._latent_cache
        return (cache.hits, cache.misses) if cache is not None else (0, 0)

    def _open_cache(self) -> LatentCache:
        """The cache folder of the current codec and media settings (:func:`default_cache_dir`); opened again when
        the codec changed (a resumed run switching to its stored copy hashes to the same folder)."""
        if self._latent_cache is None or self._cache_codec is not self.codec:
            self._latent_cache = LatentCache(default_cache_dir(self.codec, self.media))
            self._cache_codec = self.codec
            log.info("latent cache: %s", self._latent_cache.folder)
        return self._latent_cache

    def _cached_latents(self, x: Tensor, keys: list[str]) -> Tensor:
        """Un-normalised codec latents ``(B, c, *s)`` of media tensors ``x`` ``(B, C, *S)``: cached ones read, the
        misses (and the items without a key) encoded as one sub-batch and stored."""
        if len(keys) != x.shape[0]:
            raise ValueError(f"batch['_keys']: expected one item key per sample ({x.shape[0]}), got {len(keys)}")
        cache = self._open_cache()
        found = cache.get(keys)  # (c, *s) or None per sample
        missing = [i for i, z in enumerate(found) if z is None]
        if missing:
            part = x if len(missing) == len(keys) else x[torch.tensor(missing, device=x.device)]
            fresh = encode_in_chunks(self.codec, part, self.chunk)  # (M, c, *s)
            cache.put([keys[i] for i in missing], fresh)
            for row, i in enumerate(missing):
                found[i] = fresh[row]
        shapes = {tuple(z.shape) for z in found}
        if len(shapes) > 1:  # a stale file of another shape under a key (cannot happen unless edited by hand)
            log.warning("latent cache: cached latents of shapes %s in one batch; encoding it again", sorted(shapes))
            z = encode_in_chunks(self.codec, x, self.chunk)
            cache.put(keys, z)
            return z
        self._cached_calls += 1
        if self._cached_calls % 1000 == 0:
            log.info("latent cache: %d hits, %d misses so far (%s)", cache.hits, cache.misses, cache.folder)
        return torch.stack([z.to(x.device) for z in found])

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        shape = self.media.sample_shape(length)
        try:
            return tuple(self.codec.latent_shape(tuple(shape)))
        except ValueError as e:
            raise ValueError(
                f"length={length}: the media shape {tuple(shape)} does not fit the autoencoder: {e}"
            ) from None

    def write(self, items: list[Any], directory: Path, prefix: str = "sample") -> list[Path]:
        return self.media.write(items, directory, prefix)

    def preview(self, items: list[Any], path: Path, captions: list[str] | None = None) -> Path | None:
        return self.media.preview(items, path, captions)

    def load_init(self, source: Any, length: float | None = None) -> Tensor:
        x = self.media.load_init(source, length)  # (C, *S)
        self.codec.latent_shape(tuple(x.shape))  # a size the codec cannot take is named here
        return self.to_latent(x[None])[0]

    def range_mask(self, shape: tuple[int, ...], start: float, end: float) -> Tensor:
        """The media adapter's mask of ``[start, end)`` mapped to latent positions: a latent position is kept when
        every media position it covers is (area pooling of the media mask, then == 1)."""
        media_shape = (shape[0], *self.codec.media_shape(tuple(shape[1:])))
        mask = self.media.range_mask(media_shape, start, end).float()  # (1, 1, *S'), 1-sized axes broadcast
        size = [1 if m == 1 else s for m, s in zip(mask.shape[2:], shape[2:])]
        pooled = F.interpolate(mask, size=size, mode="area") if list(mask.shape[2:]) != size else mask
        return (pooled > 1 - 1e-6).float()

    def known_conditions(self, known: Tensor, mask: Tensor) -> dict[str, Tensor]:
        return self.media.known_conditions(known, mask)

    def known_mask(self, x0: Tensor, generator: Any = None) -> Tensor | None:
        return self.media.known_mask(x0, generator)


def _short(values: list[float]) -> str:
    shown = ", ".join(f"{v:.3g}" for v in values[:4])
    return f"[{shown}{', ...' if len(values) > 4 else ''}]"
