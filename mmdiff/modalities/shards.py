"""Streaming shards: a folder's media written once into WebDataset-style tar files, read back as a seeded stream.

For corpora that do not fit a machine's disk and for runs on several machines. :func:`write_shards` turns a folder
dataset (:class:`~mmdiff.modalities.audio.folder.AudioFolder`, :class:`~mmdiff.modalities.video.folder.VideoFolder`)
into ``{name}-000000.tar, {name}-000001.tar, ...`` plus an index ``shards.json``, on a local path or any fsspec URL
(``s3://``, ``gs://``, ``memory://`` ...). :class:`AudioShards` / :class:`VideoShards` read them back.

**The tar files** follow the WebDataset convention (github.com/webdataset/webdataset, "The WebDataset Format"): the
members of one item are consecutive and share a key, ``<key>.<ext>``; any WebDataset reader can read them.

* ``<key>.flac`` (audio): the whole file decoded and resampled at the dataset's ``sample_rate`` and ``channels``,
  24-bit FLAC (lossless for the decoded waveform up to 2^-23; full-scale overshoot from resampling is clipped).
* ``<key>.npy`` (video): every frame at the dataset's ``fps`` from t = 0 (``ceil(duration * fps)`` frames), resized and
  center-cropped to ``size``, uint8 ``(frames, H, W, 3)`` (NumPy format, read with ``allow_pickle=False``).
* ``<key>.txt``: the caption (UTF-8; empty when the file has none); ``<key>.cls``: the class index as decimal text,
  only when the folder is labelled; ``<key>.json``: ``{"file": path relative to the folder, "duration": seconds}``.

Why decoded media and not the original file bytes: the bytes would be smaller for mp3 and format-agnostic, but every
training item would then decode and resample its whole file (0.5 s for a 3-minute mp3, the cost issue 14 measured),
on every epoch and every machine. Decoded at the dataset's settings, an item is a FLAC seek + decode of just the crop
(about 1 ms) or a slice of a uint8 array, so the reader keeps up with a GPU; the price is that ``sample_rate`` /
``channels`` (audio) and ``fps`` / ``size`` (video) are fixed when the shards are written. The crop length
(``duration``, ``num_frames``) and the short-clip policy stay reading-time settings.

**The index** ``shards.json`` holds the settings, the classes, each shard's name and item count and the byte range of
every item inside its shard (``offsets``: ``items + 1`` increasing numbers per shard). With it a reader knows the
stream's length without opening a shard and reads any item with one ranged read (``fs.cat_file``): a process reads
only its own items, and resuming skips to a position without reading what lies before it. It is written last, so
shards being written are never read.

**The stream** (:meth:`ShardDataset.stream`): epoch ``e`` reads the shards in a permuted order seeded by
``epoch_seed(e)``; with ``shuffle=True`` the items of each shard come in an order permuted by ``(epoch_seed(e),
shard)`` (a shuffle buffer as large as the shard: because the index gives every item's byte range, no smaller buffer
is needed). Global stream position ``p`` is item ``p mod N`` of epoch ``p // N`` in that order, with crop randomness
from ``item_seed(p)``. :func:`mmdiff.train.stream.streaming_batches` supplies both seed functions and says which
positions each process and loader worker takes.
"""

from __future__ import annotations

import bisect
import io
import json
import logging
import math
import posixpath
import tarfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset

log = logging.getLogger("mmdiff.data")

INDEX = "shards.json"
FORMAT = "mmdiff-shards"
VERSION = 1
_TAR_BLOCK = 512


def _fsspec():
    try:
        import fsspec
    except ImportError as error:  # a torch dependency, so normally present
        raise ImportError("mmdiff shards read and write through fsspec: pip install mmdiff[shards]") from error
    return fsspec


def _soundfile():
    try:
        import soundfile
    except ImportError as error:  # a librosa dependency, so normally present
        raise ImportError("mmdiff audio shards encode FLAC with soundfile: pip install mmdiff[shards]") from error
    return soundfile


def _filesystem(url: Any) -> tuple[Any, str]:
    """``(fsspec filesystem, path in it)`` for a local path or an fsspec URL."""
    return _fsspec().core.url_to_fs(str(url))


# ------------------------------------------------------------------------------------------------------- media codecs


def encode_audio(waveform: Tensor, sample_rate: int) -> bytes:
    """``(C, T)`` float waveform -> 24-bit FLAC bytes (values clipped to the 24-bit range)."""
    data = np.clip(waveform.detach().float().cpu().numpy().T, -1.0, 1.0 - 2.0**-23)  # (T, C)
    buffer = io.BytesIO()
    _soundfile().write(buffer, data, int(sample_rate), format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


def audio_crop(
    payload: bytes, num_samples: int, short_policy: str, generator: torch.Generator | None, where: str = "FLAC"
) -> Tensor:
    """A ``(C, num_samples)`` float32 crop of FLAC ``payload``, drawn as :class:`AudioFolder` draws it.

    Longer media: start ``randint(0, T - num_samples + 1)`` from ``generator``, then only that window is decoded (a
    FLAC seek). Shorter: ``"loop"`` repeats it, ``"pad"`` (and ``"skip"``, for media the folder header overstated)
    zero-pads the end. The same seed gives the same start as the folder dataset on the same waveform.
    """
    try:
        with _soundfile().SoundFile(io.BytesIO(payload)) as f:
            length = f.frames
            if length > num_samples:
                start = int(torch.randint(0, length - num_samples + 1, (1,), generator=generator))
                f.seek(start)
                data = f.read(num_samples, dtype="float32", always_2d=True)  # (num_samples, C)
            else:
                data = f.read(dtype="float32", always_2d=True)
    except (RuntimeError, ValueError) as error:  # soundfile.LibsndfileError is a RuntimeError
        raise ValueError(f"{where}: not readable FLAC ({error})") from error
    waveform = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, T')
    if waveform.shape[1] == num_samples:
        return waveform
    if waveform.shape[1] == 0:
        raise ValueError(f"{where}: the FLAC member holds no samples")
    if short_policy == "loop":
        return waveform.repeat(1, -(-num_samples // waveform.shape[1]))[:, :num_samples]
    return torch.nn.functional.pad(waveform, (0, num_samples - waveform.shape[1]))


def encode_frames(frames: Tensor) -> bytes:
    """``(3, F, H, W)`` float in [0, 1] -> ``.npy`` bytes of uint8 ``(F, H, W, 3)``."""
    array = frames.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npy_view(payload: bytes, where: str) -> np.ndarray:
    """The array of ``.npy`` bytes, viewed without a copy (header parsed by NumPy; no pickles)."""
    stream = io.BytesIO(payload)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f".npy format version {version} (uint8 frames are written as 1.0)")
        shape, fortran, dtype = read_header[version](stream)
    except ValueError as error:
        raise ValueError(f"{where}: not a .npy array ({error})") from error
    if dtype != np.uint8 or fortran or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"{where}: expected uint8 (frames, H, W, 3) in C order, got {dtype} {shape}")
    return np.frombuffer(payload, dtype=np.uint8, count=math.prod(shape), offset=stream.tell()).reshape(shape)


def video_clip(
    payload: bytes, num_frames: int, short_policy: str, generator: torch.Generator | None, where: str = "npy"
) -> Tensor:
    """A float32 ``(3, num_frames, H, W)`` clip in [0, 1] of the uint8 frames in ``payload``.

    Longer media: the first frame ``randint(0, F - num_frames + 1)`` from ``generator`` (frame-aligned starts on the
    stored ``fps`` grid, where :class:`VideoFolder` draws a start in seconds). Shorter: ``"loop"`` wraps around,
    ``"pad"`` (and ``"skip"``) repeats the last frame.
    """
    frames = _npy_view(payload, where)  # (F, H, W, 3) uint8
    count = frames.shape[0]
    if count == 0:
        raise ValueError(f"{where}: the .npy member holds no frames")
    if count >= num_frames:
        first = int(torch.randint(0, count - num_frames + 1, (1,), generator=generator))
        picked = frames[first : first + num_frames]
    else:
        index = np.arange(num_frames)
        picked = frames[index % count if short_policy == "loop" else np.minimum(index, count - 1)]
    return torch.from_numpy(np.array(picked, copy=True)).permute(3, 0, 1, 2).float().div(255.0)  # (3, F, H, W)


# ------------------------------------------------------------------------------------------------------------ writing


def _folder_kind(dataset: Any) -> str:
    from .audio.folder import AudioFolder
    from .video.folder import VideoFolder

    if isinstance(dataset, AudioFolder):
        return "audio"
    if isinstance(dataset, VideoFolder):
        return "video"
    raise ValueError(
        f"write-shards reads a folder of media (AudioFolder or VideoFolder; set data.root=PATH), got "
        f"{type(dataset).__name__}"
    )


def _settings(dataset: Any, kind: str) -> dict[str, Any]:
    if kind == "audio":
        return {"sample_rate": dataset.sample_rate, "channels": dataset.channels}
    return {"fps": dataset.fps, "size": list(dataset.size)}


def _encode_record(dataset: Any, kind: str, record: Any) -> tuple[str, bytes, float]:
    """``(extension, media bytes, duration s)`` of one folder file at the dataset's settings (the slow part)."""
    if kind == "audio":
        from .audio.io import load_audio

        waveform = load_audio(record.path, dataset.sample_rate, dataset.channels)  # (C, T)
        return "flac", encode_audio(waveform, dataset.sample_rate), waveform.shape[1] / dataset.sample_rate
    from .video.io import read_clip

    count = max(1, math.ceil(record.duration * dataset.fps - 1e-6))  # frames at k / fps for t in [0, duration)
    frames = read_clip(record.path, count, dataset.fps, dataset.size, start=0.0, short_policy="pad")
    return "npy", encode_frames(frames), count / dataset.fps


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444  # mtime 0: the same folder gives the same bytes
    tar.addfile(info, io.BytesIO(data))


class _ShardWriter:
    """Writes items into ``{name}-NNNNNN.tar`` files of at most ``shard_size`` items / ``shard_bytes`` bytes."""

    def __init__(self, fs: Any, path: str, name: str, shard_size: int, shard_bytes: int):
        self.fs, self.path, self.name = fs, path, name
        self.shard_size, self.shard_bytes = shard_size, shard_bytes
        self.shards: list[dict[str, Any]] = []
        self._file = self._tar = None

    def _open(self) -> None:
        shard = f"{self.name}-{len(self.shards):06d}.tar"
        self._file = self.fs.open(posixpath.join(self.path, shard), "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w|", format=tarfile.USTAR_FORMAT)
        self.shards.append({"name": shard, "items": 0, "offsets": [0]})

    def _close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._file.close()
            self.shards[-1]["bytes"] = self.fs.size(posixpath.join(self.path, self.shards[-1]["name"]))
            self._file = self._tar = None

    def add(self, key: str, members: dict[str, bytes]) -> None:
        shard = self.shards[-1] if self.shards else None
        if self._tar is None or shard["items"] >= self.shard_size or shard["offsets"][-1] >= self.shard_bytes:
            self._close()
            self._open()
        for ext, data in members.items():
            _member(self._tar, f"{key}.{ext}", data)
        self.shards[-1]["items"] += 1
        self.shards[-1]["offsets"].append(self._tar.offset)  # the end of this item = the start of the next

    def close(self) -> list[dict[str, Any]]:
        self._close()
        return self.shards


def write_shards(
    dataset: Any,
    out: str,
    *,
    name: str = "data",
    shard_size: int = 1000,
    shard_mb: float = 1024.0,
    workers: int = 4,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the files of folder ``dataset`` as tar shards + ``shards.json`` under ``out`` (path or fsspec URL).

    Each file becomes one item (module docstring: members and why decoded media). A new shard starts after
    ``shard_size`` items or once a shard holds ``shard_mb`` MiB. Files are decoded by ``workers`` threads (FFmpeg
    decodes outside the GIL) and written in folder order. A file that fails to decode is skipped with a warning naming
    it; files the folder scan skipped are listed too: both are in the index's ``skipped`` and the returned summary.
    Refuses an ``out`` that already holds a ``shards.json`` unless ``overwrite``. Returns the index (a dict).
    """
    kind = _folder_kind(dataset)
    if int(shard_size) < 1 or not float(shard_mb) > 0:
        raise ValueError(f"write-shards: shard_size must be >= 1 item and shard_mb > 0, got {shard_size}, {shard_mb}")
    if not name or "/" in name or "." in name:
        raise ValueError(f"write-shards: name must be a plain file-name prefix without '/' or '.', got {name!r}")
    fs, path = _filesystem(out)
    if fs.exists(posixpath.join(path, INDEX)) and not overwrite:
        raise ValueError(f"write-shards: {out} already holds {INDEX}; choose another out=... or pass overwrite=true")
    fs.makedirs(path, exist_ok=True)
    records = dataset.clips if kind == "audio" else dataset.videos
    skipped = [{"file": str(p), "reason": reason} for p, reason in dataset.skipped]
    writer = _ShardWriter(fs, path, name, int(shard_size), int(float(shard_mb) * 2**20))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records), desc="write-shards", unit="file", dynamic_ncols=True)
    seconds, written = 0.0, 0
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        pending: deque[tuple[Any, Future]] = deque()
        todo = iter(records)
        while True:
            while len(pending) < 2 * max(1, int(workers)) and (record := next(todo, None)) is not None:
                pending.append((record, pool.submit(_encode_record, dataset, kind, record)))
            if not pending:
                break
            record, future = pending.popleft()
            try:
                ext, media, duration = future.result()
            except (ValueError, OSError, RuntimeError) as error:  # AudioDecodeError / VideoDecodeError are ValueErrors
                reason = " ".join(str(error).split())
                log.warning("write-shards: skipping %s: %s", record.path, reason)
                skipped.append({"file": str(record.path), "reason": reason})
            else:
                members = {ext: media, "txt": record.caption.encode("utf-8")}
                if dataset.labels:
                    members["cls"] = str(record.label).encode()
                relative = record.path.relative_to(dataset.root).as_posix()
                members["json"] = json.dumps({"file": relative, "duration": round(duration, 6)}).encode()
                writer.add(f"{written:09d}", members)
                seconds, written = seconds + duration, written + 1
            if bar is not None:
                bar.update(1)
    shards = writer.close()
    if bar is not None:
        bar.close()
    if not written:
        raise ValueError(f"write-shards: no file of {dataset.root} could be decoded ({len(skipped)} skipped)")
    index = {
        "format": FORMAT,
        "version": VERSION,
        "modality": kind,
        "media": "flac" if kind == "audio" else "npy",
        "settings": _settings(dataset, kind),
        "labelled": bool(dataset.labels),
        "class_names": list(dataset.class_names),
        "items": written,
        "hours": seconds / 3600,
        "source": str(dataset.root),
        "shards": shards,
        "skipped": skipped,
    }
    with fs.open(posixpath.join(path, INDEX), "wb") as f:
        f.write(json.dumps(index, indent=1).encode("utf-8"))
    index["summary"] = (
        f"write-shards: {written} {kind} files ({seconds / 3600:.2f} h) in {len(shards)} shard(s), "
        f"{sum(s['bytes'] for s in shards) / 2**20:.1f} MiB, at {out}; {len(skipped)} skipped"
        + (f" (first: {skipped[0]['file']}: {skipped[0]['reason']})" if skipped else "")
    )
    log.info("%s", index["summary"])
    return index


# ------------------------------------------------------------------------------------------------------------ reading


def read_index(url: str) -> dict[str, Any]:
    """The checked ``shards.json`` under ``url``: a one-line error names what is missing or wrong."""
    fs, path = _filesystem(url)
    where = posixpath.join(str(url).rstrip("/"), INDEX)
    try:
        with fs.open(posixpath.join(path, INDEX), "rb") as f:
            index = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"shards: no {INDEX} at {url} (write shards with `mmdiff write-shards`; the index is written last, so an "
            "interrupted write has none)"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"shards: {where} is not valid JSON ({error})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"shards: {where} is not an {FORMAT} version {VERSION} index")
    for shard in index["shards"]:
        offsets = shard.get("offsets", [])
        if len(offsets) != shard["items"] + 1 or bool(np.any(np.diff(offsets) <= 0)):
            raise ValueError(f"shards: {where}: shard {shard['name']} has {shard['items']} items but bad offsets")
    return index


def _split_members(data: bytes, where: str) -> tuple[str, dict[str, bytes]]:
    """The tar members in one item's byte range -> ``(key, {extension: bytes})``."""
    members: dict[str, bytes] = {}
    key = None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                stem, _, ext = posixpath.basename(info.name).partition(".")
                base = posixpath.join(posixpath.dirname(info.name), stem)
                if key is None:
                    key = base
                if base != key or not info.isfile():
                    raise tarfile.TarError(f"member {info.name} does not belong to item {key}")
                members[ext] = tar.extractfile(info).read()
    except tarfile.TarError as error:
        raise ValueError(f"shards: {where} does not match {INDEX} ({error}); rewrite the shards") from error
    if key is None:
        raise ValueError(f"shards: {where} holds no tar member; the shard does not match {INDEX}; rewrite the shards")
    return key, members


class ShardDataset(IterableDataset):
    """Items of shards written by :func:`write_shards`, as a seeded stream (:meth:`stream`) or by index.

    ``len(dataset)`` is the number of items (one epoch); ``num_classes`` / ``class_names`` come from the index.
    ``stream`` is what training uses (through :func:`mmdiff.train.stream.streaming_batches`); ``dataset[(index,
    item_seed)]`` reads item ``index`` of the written order (as a folder dataset's keys, for evaluation and checks);
    iterating the dataset directly gives epochs of the stream from position 0 with seeds ``e`` and ``p``.

    Subclasses say how an item's members become a training item (:meth:`_item`).
    """

    modality = ""

    def __init__(self, url: str, shuffle: bool = True):
        self.url, self.shuffle = str(url), bool(shuffle)
        index = read_index(self.url)
        if index["modality"] != self.modality:
            raise ValueError(f"shards: {self.url} holds {index['modality']} shards, not {self.modality}")
        self.index = index
        self.settings = index["settings"]
        self.labelled = bool(index["labelled"])
        self.class_names = list(index["class_names"])
        self.num_classes = len(self.class_names)
        self.shards = [s["name"] for s in index["shards"]]
        self.counts = [int(s["items"]) for s in index["shards"]]
        self.offsets = [s["offsets"] for s in index["shards"]]
        self.first = np.cumsum([0, *self.counts]).tolist()  # written index of each shard's first item
        self._fs = None

    def __len__(self) -> int:
        return self.first[-1]

    def summary(self) -> str:
        return (
            f"{type(self).__name__} {self.url}: {len(self)} items in {len(self.shards)} shard(s), "
            f"{self.index['hours']:.2f} h, {self._settings_text()}"
            + (f", {self.num_classes} classes" if self.labelled else "")
            + f", {len(self.index['skipped'])} files skipped when written"
        )

    def _settings_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.settings.items())

    def __repr__(self) -> str:
        return self.summary()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None}  # each loader worker opens its own filesystem handle

    # ------------------------------------------------------------------------------------------------------- items

    def _read(self, shard: int, item: int) -> dict[str, bytes]:
        """The members of item ``item`` of shard ``shard``: one ranged read of its bytes."""
        if self._fs is None:
            self._fs, self._path = _filesystem(self.url)
        start, end = self.offsets[shard][item], self.offsets[shard][item + 1]
        where = f"{self.url}/{self.shards[shard]} bytes {start}-{end}"
        data = self._fs.cat_file(posixpath.join(self._path, self.shards[shard]), start=start, end=end)
        if len(data) != end - start:
            raise ValueError(f"shards: {where}: the shard ends early; it does not match {INDEX}; rewrite the shards")
        return _split_members(data, where)[1]

    def _item(self, members: dict[str, bytes], generator: torch.Generator, where: str) -> dict[str, Any]:
        raise NotImplementedError

    def _labelled(self, item: dict[str, Any], members: dict[str, bytes], where: str) -> dict[str, Any]:
        item["caption"] = members.get("txt", b"").decode("utf-8")
        if self.labelled:
            if "cls" not in members:
                raise ValueError(f"shards: {where} has no .cls member, but {INDEX} says the shards are labelled")
            item["label"] = torch.tensor(int(members["cls"]), dtype=torch.int64)
        return item

    def _load(self, shard: int, item: int, seed: int) -> dict[str, Any]:
        where = f"{self.url}/{self.shards[shard]} item {item}"
        return self._item(self._read(shard, item), torch.Generator().manual_seed(int(seed)), where)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, 0)  # an int alone: a fixed seed (mmdiff.data)
        index = range(len(self))[index]
        shard = bisect.bisect_right(self.first, index) - 1
        return self._load(shard, index - self.first[shard], seed)

    # ------------------------------------------------------------------------------------------------------ stream

    def stream(
        self, positions: Iterable[int], epoch_seed: Callable[[int], int], item_seed: Callable[[int], int]
    ) -> Iterator[dict[str, Any]]:
        """The items at increasing global stream ``positions``: position ``p`` is item ``p mod N`` of epoch ``p // N``.

        Epoch ``e`` takes the shards in the order ``default_rng(epoch_seed(e)).permutation(shards)``; with ``shuffle``
        the items of shard ``s`` come in the order ``default_rng([epoch_seed(e), s]).permutation(items)``, else as
        written. Item ``p``'s crop is drawn from ``torch.Generator().manual_seed(item_seed(p))``. Each item is one
        ranged read, so positions that are not asked for cost nothing: a resumed run starts at its position at once.
        """
        total, epoch, order, starts, within = len(self), None, None, None, {}
        for p in positions:
            e, offset = divmod(int(p), total)
            if e != epoch:
                seed = int(epoch_seed(e))
                order = np.random.default_rng(seed).permutation(len(self.shards))  # shard read order of epoch e
                starts = np.cumsum([0, *(self.counts[s] for s in order)]).tolist()
                epoch, within = e, {}
            j = bisect.bisect_right(starts, offset) - 1
            shard, k = int(order[j]), offset - starts[j]
            if self.shuffle:
                if shard not in within:
                    within = {shard: np.random.default_rng([seed, shard]).permutation(self.counts[shard])}
                k = int(within[shard][k])
            yield self._load(shard, k, item_seed(int(p)))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        position = 0
        while True:
            yield from self.stream(range(position, position + len(self)), lambda e: e, lambda p: p)
            position += len(self)


def _check_setting(url: str, index: dict[str, Any], key: str, wanted: Any) -> None:
    have = index["settings"][key]
    if wanted is not None and have != wanted:
        raise ValueError(
            f"shards: {url} were written with {key}={have}, the config asks for {wanted}; write the shards again "
            f"with that setting or set data.{key}={have}"
        )


class AudioShards(ShardDataset):
    """Audio shards as training items ``{"audio": (channels, round(duration * sample_rate)), "caption": str}`` (+
    ``"label"`` when labelled): random ``duration``-second crops as :class:`AudioFolder` draws them.

    ``sample_rate`` and ``channels`` are fixed by the shards (checked when given); ``duration`` and ``short_policy``
    (``pad`` | ``loop``; ``skip`` pads, the skipping happened when the shards were written) are free.
    """

    modality = "audio"

    def __init__(
        self,
        url: str,
        duration: float = 2.0,
        sample_rate: int | None = None,
        channels: int | None = None,
        short_policy: str = "pad",
        shuffle: bool = True,
    ):
        super().__init__(url, shuffle)
        _check_setting(self.url, self.index, "sample_rate", sample_rate)
        _check_setting(self.url, self.index, "channels", channels)
        if short_policy not in ("pad", "loop", "skip"):
            raise ValueError(f"AudioShards: short_policy must be pad, loop or skip, got {short_policy!r}")
        self.sample_rate, self.channels = int(self.settings["sample_rate"]), int(self.settings["channels"])
        self.duration, self.short_policy = float(duration), short_policy
        self.num_samples = round(self.duration * self.sample_rate)
        if self.num_samples < 1:
            raise ValueError(f"AudioShards: duration must be a positive number of seconds, got {duration}")

    def _item(self, members: dict[str, bytes], generator: torch.Generator, where: str) -> dict[str, Any]:
        if "flac" not in members:
            raise ValueError(f"shards: {where} has no .flac member")
        audio = audio_crop(members["flac"], self.num_samples, self.short_policy, generator, where)
        if audio.shape[0] != self.channels:
            raise ValueError(f"shards: {where} has {audio.shape[0]} channels, {INDEX} says {self.channels}")
        return self._labelled({"audio": audio}, members, where)


class VideoShards(ShardDataset):
    """Video shards as training items ``{"video": (3, num_frames, H, W) float32 in [0, 1], "caption": str}`` (+
    ``"label"``): clips of ``num_frames`` consecutive stored frames from a random frame-aligned start.

    ``fps`` and ``size`` are fixed by the shards (checked when given); ``num_frames`` and ``short_policy`` (``loop`` |
    ``pad``; ``skip`` pads) are free.
    """

    modality = "video"

    def __init__(
        self,
        url: str,
        num_frames: int = 16,
        fps: float | None = None,
        size: tuple[int, int] | list[int] | None = None,
        short_policy: str = "loop",
        shuffle: bool = True,
    ):
        super().__init__(url, shuffle)
        _check_setting(self.url, self.index, "fps", None if fps is None else float(fps))
        _check_setting(self.url, self.index, "size", None if size is None else [int(s) for s in size])
        if short_policy not in ("pad", "loop", "skip"):
            raise ValueError(f"VideoShards: short_policy must be loop, pad or skip, got {short_policy!r}")
        if not (int(num_frames) == num_frames and num_frames >= 1):
            raise ValueError(f"VideoShards: num_frames must be a positive integer, got {num_frames!r}")
        self.fps, self.size = float(self.settings["fps"]), tuple(self.settings["size"])
        self.num_frames, self.short_policy = int(num_frames), short_policy

    def _item(self, members: dict[str, bytes], generator: torch.Generator, where: str) -> dict[str, Any]:
        if "npy" not in members:
            raise ValueError(f"shards: {where} has no .npy member")
        video = video_clip(members["npy"], self.num_frames, self.short_policy, generator, where)
        return self._labelled({"video": video}, members, where)
