"""A prepared-data store for folder datasets: every file decoded once, read back memory-mapped at training time.

A folder dataset (:class:`~mmdiff.modalities.audio.AudioFolder`, :class:`~mmdiff.modalities.video.VideoFolder`)
decodes (and resamples or resizes) a whole file for every training item. The store does that work once per file and
keeps the result in a few large **shard** files of raw bytes, so that an item is a slice of a memory-mapped array
(page cache speed, shared between DataLoader workers) instead of a decode.

Layout of a store folder (``cache_root() / "prepared" / cache_key(absolute root, kind, settings)`` by default, see
:func:`store_dir`)::

    index.json          {"version", "kind", "settings", "root", "files": {relative path: entry}, "skipped": {...}}
    shard-000001.bin    raw array bytes, each array starting at a multiple of 64 bytes
    shard-000002.bin    ...

An entry names the file's ``size`` and ``mtime_ns`` (what it was prepared from), its arrays
(``{name: {"shard", "offset", "dtype", "shape"}}``) and a few JSON numbers (``attrs``). Raw ``.bin`` shards (not
``.npy``) because a shard is written as a stream while files finish decoding, before its total length is known, and
``np.memmap`` of raw bytes reads as fast as ``np.load(mmap_mode="r")`` of an ``.npy`` (both are one ``mmap``).
Nothing read from the store can run code: JSON and raw numbers only.

Updating (:meth:`PreparedStore.update`): each file's size and mtime are compared with its entry; a changed or added
file is decoded again and its arrays are appended to a **new** shard (shards are never rewritten), a removed file's
entry is dropped. A shard that no entry uses any more is deleted; the dead space of replaced files inside shards still
in use is left until ``mmdiff prepare ... --rebuild`` (the summary line reports it), because compacting would rewrite
gigabytes to save a little. A file that fails to decode is skipped with a warning naming it and remembered in
``skipped`` with its size and mtime, so it is retried only once it changes.

Crash safety: shard bytes are written and ``fsync``-ed before an index that points at them replaces the old one
atomically (``os.replace`` of a temporary file), every :data:`CHECKPOINT_SECONDS` and at the end. A prepare killed at
any moment leaves the last index, which only names bytes already on disk: the files it finished are used as they are,
the rest are decoded on the next update, and the unreferenced tail or shard it left is deleted or ignored. An index
that cannot be read (not JSON, another version or other settings) is a warning and the store is rebuilt; an entry
whose shard is missing or too short is redone. Concurrent processes (ranks of one multi-GPU run) take a file lock
(``fcntl.flock``) on the store, so one prepares while the others wait and then find it up to date.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .cache import cache_key, cache_root

__all__ = ["PrepareReport", "PreparedFolder", "PreparedStore", "prepare", "store_dir"]

log = logging.getLogger("mmdiff.data")

VERSION = 1  # of the index layout and of the decoded data; another version is rebuilt
INDEX = "index.json"
SHARD_BYTES = 1 << 30  # a shard is closed after this many bytes (1 GiB): few files, none too large to copy
CHECKPOINT_SECONDS = 30.0  # how often a long prepare makes its finished files durable
_ALIGN = 64  # every array starts at a multiple of 64 bytes: aligned views of any dtype
MAX_WARNINGS = 20  # remembered-skip warnings printed per start, then one line counting the rest

#: What a decoder returns for one file: ``(arrays, attrs)`` (named numpy arrays, JSON numbers), or a reason string
#: when the file cannot be used.
Decoded = tuple[dict[str, np.ndarray], dict[str, Any]]


def store_dir(root: str | Path, kind: str, settings: dict[str, Any]) -> Path:
    """The default store of a folder: ``cache_root() / "prepared" / cache_key(absolute root, kind, settings)``."""
    return cache_root() / "prepared" / cache_key(str(Path(root).expanduser().resolve()), kind, settings, VERSION)


@dataclass
class PrepareReport:
    """What one :meth:`PreparedStore.update` did; :meth:`line` is the one-line summary ``mmdiff prepare`` prints."""

    store: Path
    files: int = 0  # files in the store after the update
    done: int = 0  # decoded in this update
    reused: int = 0  # unchanged since an earlier update
    skipped: int = 0  # could not be decoded (now or remembered from before)
    removed: int = 0  # entries dropped because their file is gone
    bytes: int = 0  # shard bytes on disk
    dead_bytes: int = 0  # bytes no entry uses (replaced files), freed by --rebuild
    seconds: float = 0.0
    extent: str = ""  # the data's size in its own units ("1.50 h of audio", "5400 frames"), set by the dataset
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def line(self) -> str:
        dead = f" ({_size(self.dead_bytes)} dead, freed by --rebuild)" if self.dead_bytes else ""
        extent = f", {self.extent}" if self.extent else ""
        return (
            f"prepared {self.store}: {self.files} files{extent}, {_size(self.bytes)}{dead}; {self.done} done, "
            f"{self.reused} reused, {self.skipped} skipped, {self.removed} removed, in {self.seconds:.1f} s"
        )


class PreparedStore:
    """One store folder: its index, its shards, reading arrays memory-mapped and updating from a file list.

    ``kind`` ("audio", "video") and ``settings`` (what the decoding depends on: sample rate, frame size ...) are
    written into the index; an index with other ones is not trusted (rebuilt).
    """

    def __init__(self, directory: str | Path, kind: str, settings: dict[str, Any]):
        self.dir, self.kind = Path(directory).expanduser(), kind
        self.settings = json.loads(json.dumps(settings))  # as it reads back from JSON (tuples -> lists)
        self.index = self._load()
        self._maps: dict[str, np.ndarray] = {}  # shard name -> its uint8 memmap, opened on first read

    # ----------------------------------------------------------------------------------------------------- reading

    def _empty(self, root: str = "") -> dict[str, Any]:
        return {
            "version": VERSION,
            "kind": self.kind,
            "settings": self.settings,
            "root": root,
            "files": {},
            "skipped": {},
        }

    def _load(self) -> dict[str, Any]:
        """The index on disk, or an empty one (with a warning when one exists but cannot be trusted)."""
        path = self.dir / INDEX
        if not path.is_file():
            return self._empty()
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            problem = _index_problem(index, self.kind, self.settings)
        except (OSError, ValueError) as error:
            problem = f"it cannot be read ({error.__class__.__name__}: {error})"
        if problem:
            log.warning("prepared store %s: rebuilding it: %s %s", self.dir, INDEX, problem)
            return self._empty()
        return index

    def __contains__(self, name: str) -> bool:
        return name in self.index["files"]

    def attrs(self, name: str) -> dict[str, Any]:
        return self.index["files"][name]["attrs"]

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of file ``name`` (relative path), as read-only views of the memory-mapped shards."""
        out = {}
        for key, where in self.index["files"][name]["arrays"].items():
            data = self._map(where["shard"])
            dtype, shape = np.dtype(where["dtype"]), tuple(where["shape"])
            count = int(np.prod(shape))
            out[key] = data[where["offset"] : where["offset"] + count * dtype.itemsize].view(dtype).reshape(shape)
        return out

    def _map(self, shard: str) -> np.ndarray:
        if shard not in self._maps:
            # copy-on-write: a private mapping that torch.from_numpy accepts without a warning; nothing writes to it
            self._maps[shard] = np.memmap(self.dir / shard, dtype=np.uint8, mode="c")
        return self._maps[shard]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}  # a worker process maps the shards again instead of copying them

    # ---------------------------------------------------------------------------------------------------- updating

    def update(
        self,
        files: Sequence[tuple[str, Path]],
        decode: Callable[[Path], Decoded],
        workers: int | None = None,
        progress: bool = True,
        rebuild: bool = False,
        root: str | Path = "",
    ) -> PrepareReport:
        """Bring the store in line with ``files`` (``(relative name, path)`` pairs): decode what is new or changed,
        reuse what is not, drop what is gone. ``decode`` must be picklable (a module-level function or a
        ``functools.partial`` of one) when ``workers > 1``; ``workers=None`` takes ``os.cpu_count()``."""
        start = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.dir / "lock"):
            self.index = self._empty(str(root)) if rebuild else self._load()
            self.index["root"] = str(root)
            report = self._update(files, decode, workers, progress, rebuild)
        self._maps = {}
        report.seconds = time.perf_counter() - start
        return report

    def _update(self, files, decode, workers, progress, rebuild) -> PrepareReport:
        index, report = self.index, PrepareReport(self.dir)
        old_files, old_skipped = index["files"], index["skipped"]
        index["files"], index["skipped"] = {}, {}
        todo: list[tuple[str, Path, dict[str, int]]] = []
        for name, path in files:
            try:
                stat = path.stat()
            except OSError as error:
                index["skipped"][name] = {"size": -1, "mtime_ns": -1, "reason": f"cannot stat it ({error})"}
                continue
            stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            entry, skip = old_files.get(name), old_skipped.get(name)
            if entry and _same(entry, stamp) and self._intact(entry):
                index["files"][name] = entry
                report.reused += 1
            elif skip and _same(skip, stamp):
                index["skipped"][name] = skip
            else:
                todo.append((name, path, stamp))
        names = {name for name, _ in files}
        report.removed = sum(1 for name in old_files if name not in names)
        if rebuild or not old_files:
            self._delete_unused_shards(keep=set())
        self._decode_into_shards(todo, decode, workers, progress, report)
        self._delete_unused_shards(keep=_shards_of(index))
        _write_index(self.dir, index)
        report.files, report.skipped = len(index["files"]), len(index["skipped"])
        report.skipped_files = [(name, skip["reason"]) for name, skip in index["skipped"].items()]
        report.bytes = sum(p.stat().st_size for p in self.dir.glob("shard-*.bin"))
        report.dead_bytes = max(0, report.bytes - _live_bytes(index))
        return report

    def _intact(self, entry: dict[str, Any]) -> bool:
        """Every array of ``entry`` lies inside an existing shard (a killed prepare may have left one short)."""
        for where in entry["arrays"].values():
            path = self.dir / where["shard"]
            nbytes = int(np.prod(where["shape"])) * np.dtype(where["dtype"]).itemsize
            if not path.is_file() or path.stat().st_size < where["offset"] + nbytes:
                return False
        return True

    def _delete_unused_shards(self, keep: set[str]) -> None:
        for path in self.dir.glob("shard-*.bin"):
            if path.name not in keep:
                path.unlink()

    def _decode_into_shards(self, todo, decode, workers, progress, report: PrepareReport) -> None:
        """Decode ``todo`` (in a process pool when it pays) and append the arrays to new shards; the index is made
        durable every :data:`CHECKPOINT_SECONDS` so that a killed prepare keeps what it finished."""
        from tqdm.auto import tqdm

        if not todo:
            return
        index = self.index
        writer = _ShardWriter(self.dir, _next_shard_number(self.dir))
        last_checkpoint = time.monotonic()
        bar = tqdm(total=len(todo), desc=f"prepare {self.kind}", unit="file", disable=not progress, dynamic_ncols=True)
        try:
            for (name, path, stamp), result in _decoded(todo, decode, workers):
                bar.update(1)
                if isinstance(result, str):
                    log.warning("prepared store: skipping %s: %s", path, result)
                    index["skipped"][name] = {**stamp, "reason": result}
                    continue
                arrays, attrs = result
                index["files"][name] = {**stamp, "arrays": writer.write(arrays), "attrs": attrs}
                report.done += 1
                if time.monotonic() - last_checkpoint > CHECKPOINT_SECONDS:
                    writer.sync()
                    _write_index(self.dir, index)
                    last_checkpoint = time.monotonic()
        finally:
            bar.close()
            writer.close()


class _ShardWriter:
    """Appends arrays to ``shard-NNNNNN.bin`` files, starting a new one past :data:`SHARD_BYTES`."""

    def __init__(self, directory: Path, number: int):
        self.dir, self.number, self.file, self.offset = directory, number, None, 0

    def write(self, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        if self.file is None or self.offset >= SHARD_BYTES:
            self._next()
        out = {}
        for key, array in arrays.items():
            array = np.ascontiguousarray(array)
            pad = -self.offset % _ALIGN
            self.file.write(b"\0" * pad)
            self.offset += pad
            out[key] = {"shard": self.name, "offset": self.offset, "dtype": array.dtype.str, "shape": list(array.shape)}
            self.file.write(array.tobytes())
            self.offset += array.nbytes
        return out

    @property
    def name(self) -> str:
        return f"shard-{self.number:06d}.bin"

    def _next(self) -> None:
        if self.file is not None:
            self.close()
            self.number += 1
        self.file, self.offset = open(self.dir / self.name, "xb"), 0

    def sync(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.sync()
            self.file.close()
            self.file = None


def _decode_one(decode: Callable[[Path], Decoded], path: Path) -> Decoded | str:
    """``decode(path)``, or the reason it failed (a string: decoder exceptions need not survive pickling)."""
    try:
        return decode(path)
    except (ValueError, OSError, RuntimeError) as error:
        return getattr(error, "reason", None) or f"{error.__class__.__name__}: {error}"


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # parallel over files, not inside one


def _decoded(todo: list, decode: Callable[[Path], Decoded], workers: int | None) -> Iterator[tuple[Any, Any]]:
    """``(todo item, decoded or reason)`` in completion order: in this process for one worker or one file, else in
    a process pool of ``workers`` (default ``os.cpu_count()``) with at most 4 files per worker in flight."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if workers == 1:
        for item in todo:
            yield item, _decode_one(decode, item[1])
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
        pending: dict[Future, Any] = {}
        items = iter(todo)
        for item in items:
            pending[pool.submit(_decode_one, decode, item[1])] = item
            if len(pending) >= 4 * workers:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
                item = next(items, None)
                if item is not None:
                    pending[pool.submit(_decode_one, decode, item[1])] = item


# -------------------------------------------------------------------------------------------------------- helpers


def _index_problem(index: Any, kind: str, settings: dict[str, Any]) -> str:
    """Why ``index`` cannot be used (``""`` when it can)."""
    if not isinstance(index, dict) or not isinstance(index.get("files"), dict):
        return "is not a store index"
    if index.get("version") != VERSION:
        return f"has version {index.get('version')!r}, expected {VERSION}"
    if index.get("kind") != kind or index.get("settings") != settings:
        return f"was made for {index.get('kind')} {index.get('settings')}, expected {kind} {settings}"
    if not isinstance(index.get("skipped"), dict):
        return "has no 'skipped' table"
    return ""


def _same(entry: dict[str, Any], stamp: dict[str, int]) -> bool:
    return entry.get("size") == stamp["size"] and entry.get("mtime_ns") == stamp["mtime_ns"]


def _shards_of(index: dict[str, Any]) -> set[str]:
    return {where["shard"] for entry in index["files"].values() for where in entry["arrays"].values()}


def _live_bytes(index: dict[str, Any]) -> int:
    """Bytes the entries use, each array rounded up to the alignment (the padding is not dead space)."""
    return sum(
        -(-int(np.prod(w["shape"])) * np.dtype(w["dtype"]).itemsize // _ALIGN) * _ALIGN
        for entry in index["files"].values()
        for w in entry["arrays"].values()
    )


def _size(nbytes: int) -> str:
    """``nbytes`` in the largest binary unit that keeps it >= 1 (``"1.50 GiB"``, ``"320.0 KiB"``)."""
    for unit, power in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 2**power:
            return f"{nbytes / 2**power:.2f} {unit}" if unit == "GiB" else f"{nbytes / 2**power:.1f} {unit}"
    return f"{nbytes} B"


def _next_shard_number(directory: Path) -> int:
    numbers = [int(p.stem.split("-")[1]) for p in directory.glob("shard-*.bin") if p.stem.split("-")[1].isdigit()]
    return max(numbers, default=0) + 1


def _write_index(directory: Path, index: dict[str, Any]) -> None:
    """Write ``index.json`` atomically: a temporary file, fsync, then ``os.replace`` over the old one."""
    tmp = directory / f"{INDEX}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(index, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / INDEX)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` while updating (no-op where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per store
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -------------------------------------------------------------------------------------------------------- datasets


class PreparedFolder(Dataset):
    """A folder dataset whose files are read from a :class:`PreparedStore` instead of being decoded per item.

    Subclasses (one per modality) say what a file decodes to (:meth:`decoder`, :meth:`settings`) and how an item is
    cut from its stored arrays with the folder's own rules, so that ``prepared[index, seed] == folder[index, seed]``
    (up to the store's number format). Files, order, labels and captions are the folder's scan; a file that fails to
    decode is left out (the items after it shift down by one). Unknown attributes (``sample_rate``, ``class_names``,
    ``num_classes``, ``root`` ...) are the folder's. Building one updates the store (progress bar, summary line
    logged on ``mmdiff.data``).
    """

    reads_files = False  # memory-mapped arrays, no decoding: trainer.num_workers=auto adds workers only on a GPU

    kind = ""

    def __init__(
        self,
        folder: Any,
        directory: str | Path | None = None,
        workers: int | None = None,
        progress: bool = True,
        rebuild: bool = False,
    ):
        self.folder = folder
        settings = self.settings()
        root = Path(folder.root).expanduser().resolve()
        self.store = PreparedStore(directory or store_dir(root, self.kind, settings), self.kind, settings)
        records = self.records()
        files = [(Path(r.path).resolve().relative_to(root).as_posix(), Path(r.path)) for r in records]
        self.report = self.store.update(files, self.decoder(), workers, progress, rebuild, root=root)
        self.report.extent = self.extent([name for name, _ in files if name in self.store])
        _warn_skipped(self.report)
        log.info("%s", self.report.line())
        self.names = [name for name, _ in files if name in self.store]  # relative path per item
        self.indices = [i for i, (name, _) in enumerate(files) if name in self.store]  # folder index per item

    # what a modality provides
    def settings(self) -> dict[str, Any]:
        """What decoding depends on (part of the store's key and checked against its index)."""
        raise NotImplementedError

    def records(self) -> list[Any]:
        """The folder's scanned files, in item order."""
        raise NotImplementedError

    def decoder(self) -> Callable[[Path], Decoded]:
        """A picklable function: file -> ``(arrays, attrs)``."""
        raise NotImplementedError

    def extent(self, names: list[str]) -> str:
        """The stored data's size in words, for the summary line."""
        return ""

    # the dataset
    def __len__(self) -> int:
        return len(self.names)

    def _key(self, key: int | tuple[int, int]) -> tuple[int, int | None]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        return range(len(self.names))[index], seed  # IndexError when out of range

    @property
    def captions(self) -> list[str]:
        """The caption of each item (from the folder's scan)."""
        records = self.records()
        return [records[i].caption for i in self.indices]

    def summary(self) -> str:
        """The folder's summary and the store's line."""
        return f"{self.folder.summary()}; {self.report.line()}"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "folder":  # unpickling looks up dunders before __dict__ is filled
            raise AttributeError(name)
        return getattr(self.folder, name)

    def __repr__(self) -> str:
        return self.summary()


def _warn_skipped(report: PrepareReport) -> None:
    """One warning per file the store could not decode (also those remembered from an earlier prepare)."""
    for name, reason in report.skipped_files[:MAX_WARNINGS]:
        log.warning("prepared store: left out %s: %s", name, reason)
    if len(report.skipped_files) > MAX_WARNINGS:
        log.warning("prepared store: ... and %d more files left out", len(report.skipped_files) - MAX_WARNINGS)


def prepare(
    folder: Any,
    directory: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    rebuild: bool = False,
) -> PreparedFolder:
    """The prepared dataset of ``folder`` (an :class:`AudioFolder` or a :class:`VideoFolder`), building or updating
    its store in ``directory`` (default :func:`store_dir`)."""
    from .audio.folder import AudioFolder
    from .audio.prepared import PreparedAudioFolder
    from .video.folder import VideoFolder
    from .video.prepared import PreparedVideoFolder

    kinds = {AudioFolder: PreparedAudioFolder, VideoFolder: PreparedVideoFolder}
    for folder_type, prepared_type in kinds.items():
        if isinstance(folder, folder_type):
            return prepared_type(folder, directory, workers=workers, progress=progress, rebuild=rebuild)
    raise ValueError(f"prepare: expected an AudioFolder or a VideoFolder, got {type(folder).__name__}")
