"""Scanning a folder of media files, shared by every folder dataset (audio, video, ...).

One pass over the files' headers at construction: each file is probed; a file the probe rejects is left out with a
warning that names it and the reason (one bad file in a large folder does not stop a run); a folder with nothing
usable is an error that says what was searched and why files were left out. Warnings go through the
``mmdiff.data`` logger, one line per file, so that a training run's log (``train.log``) keeps them. With
``labels="subfolder"`` a file's class is its first sub-folder under the root (sorted names numbered from 0).

Captions are read in the same scan, as users already keep them:

* a table at the root (the convention of Hugging Face datasets' AudioFolder / VideoFolder): ``metadata.csv`` (UTF-8,
  a header row; read with the ``csv`` module) or ``metadata.jsonl`` (one JSON object per line; read with the ``json``
  module, so nothing in it can run code). Its ``file_name`` column is the file's path relative to the root (``/``
  separators, sub-folders allowed; ``\\`` is read as ``/``); its ``caption`` or ``text`` column is the caption.
* a sidecar text file beside the media file, ``clip.txt`` for ``clip.wav`` (stable-audio-tools' habit; UTF-8,
  surrounding white space stripped).

Rules, chosen so that a run never guesses silently:

* both ``metadata.csv`` and ``metadata.jsonl`` at the root is an error (as in Hugging Face datasets): keep one.
* a table without a ``file_name`` column, or without a ``caption`` / ``text`` column, is an error naming the table,
  the columns it has and the ones expected; so are a malformed JSON line, a CSV row whose field count differs from the
  header's, and a row without a file name (each naming the table and the line).
* when a row has both ``caption`` and ``text`` and they differ, ``caption`` wins (warning): ``text`` is the generic
  column of Hugging Face tables and often holds a transcript, ``caption`` names exactly what is meant. An empty cell
  counts as no value, so the other column is used without a warning.
* a row naming a file that does not exist is ignored with a warning (table, line, file). A row naming a file that
  exists but is not used (another extension, or a file skipped by the probe, which was warned about already) is
  ignored quietly: one table may describe a folder's audio and its video.
* a file named by two rows with different captions: the later row wins (a table appended to corrects itself); a
  table caption that differs from the sidecar ``.txt``: the table wins (it is the one place that describes the whole
  folder). Both are warnings naming both sources and which one wins. An empty table caption falls back to the
  sidecar; a sidecar that cannot be read (not UTF-8) is a warning, and its file trains with the empty caption.
* only the root's table is read (not tables in sub-folders); a sidecar is ``<stem>.txt`` exactly (lower case), so
  ``clip.wav`` and ``clip.flac`` share ``clip.txt``.
* a file with no caption from any source trains with the empty caption ``""`` (the null condition of classifier-free
  guidance); these are counted in the dataset's summary, not warned about one by one.

Repeated warnings of one kind (rows naming missing files, disagreements) are logged for the first
:data:`MAX_WARNINGS` cases, then counted in one closing line, so that a large stale table does not flood the log.

The scan cache. Reading a header costs about 2 ms a file (PyAV opens the container), minutes for 100,000 files, so
what the headers said is remembered between runs and processes: one JSON file per folder under
``cache_root() / "scans"`` (:mod:`mmdiff.modalities.cache`), named by ``cache_key(absolute root, extensions, kind,
header function, version)``. Each file's entry is keyed by its path relative to the root, its size and its
``mtime_ns`` (the test make, rsync and git use): on the next scan only new or changed files are read again, removed
ones are dropped, and files whose header could not be read are remembered with their reason (and read again once they
change). What is cached is the *header* (``header(path)``, a JSON-able dict such as
:func:`~mmdiff.modalities.audio.io.audio_info`'s), not the dataset's record: the dataset's decision
(``probe(path, info)``: short files skipped under ``short_policy="skip"``, ...) runs again on every scan, so changing a
setting never serves a stale decision and never costs a re-read. The file is written atomically (a temporary file
and :func:`os.replace`, so concurrent ranks never see half a file); a corrupt one is ignored with a warning and
rewritten; a cache folder that cannot be written is warned about once and the scan goes on uncached. Captions are not
cached: tables and sidecars are re-read on every scan (cheap, and users edit them). A file rewritten with the same
size within one mtime tick of the scan that cached it is not noticed (the "racy" case git also has); touch it.

Headers not in the cache are read in parallel: a thread pool (PyAV releases the GIL while FFmpeg opens and parses a
container; threads measured faster than processes, which pay for a fresh interpreter and pickling), with a tqdm
progress bar when more than :data:`PROGRESS_MIN_FILES` files are read and stderr is a terminal. Results and warnings
come in sorted file order, identical to a serial scan.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
import stat
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .cache import cache_key, cache_root

log = logging.getLogger("mmdiff.data")

METADATA_TABLES = ("metadata.csv", "metadata.jsonl")  # at the folder root; never taken as media
CAPTION_COLUMNS = ("caption", "text")  # in order of precedence when a row has both
MAX_WARNINGS = 20  # per kind of repeated warning, then one line that counts the rest
SCAN_CACHE_VERSION = 1  # bump when what a header function returns changes: old scan caches are then not used
PARALLEL_MIN_FILES = 16  # fewer headers to read: read them serially (a pool costs more than it saves)
PROGRESS_MIN_FILES = 300  # more headers to read: a progress bar (on a terminal)


class SkipFile(Exception):
    """Raised by a probe to leave a file out: ``reason`` is reported; ``warn=False`` for an expected, quiet skip.

    ``group`` names the kind of skip in the dataset's summary ("2 no audio stream, 1 the file is empty"); by default
    the reason up to its first detail (`` (`` or ``: ``), so "no audio stream (streams found: video)" counts as
    "no audio stream"."""

    def __init__(self, reason: str, warn: bool = True, group: str | None = None):
        super().__init__(reason)
        self.reason, self.warn = reason, warn
        self.group = group or reason.split(" (")[0].split(": ")[0]


@dataclass(frozen=True)
class ScanReport:
    """How a scan went, for the dataset's summary: headers read (``probed``) and taken from the scan cache
    (``cached``), the wall time, skips counted by :attr:`SkipFile.group` (most common first, then by name), and the
    cache file (``None`` when the scan was not cached)."""

    probed: int = 0
    cached: int = 0
    seconds: float = 0.0
    skips: tuple[tuple[str, int], ...] = ()
    cache_file: Path | None = None

    def text(self) -> str:
        """``"scan: 5 probed, 95 from cache, 0.12 s"``."""
        return f"scan: {self.probed} probed, {self.cached} from cache, {self.seconds:.2f} s"

    def skipped_text(self) -> str:
        """``"0 skipped"`` or ``"3 skipped (2 no audio stream, 1 the file is empty)"``."""
        total = sum(n for _, n in self.skips)
        if not total:
            return "0 skipped"
        return f"{total} skipped (" + ", ".join(f"{n} {group}" for group, n in self.skips) + ")"


@dataclass(frozen=True)
class FolderScan:
    """What :func:`scan_folder` found: the probed records (with ``label`` and ``caption`` set), the skipped files,
    the classes, the caption table used (``None`` when the root has none) and how the scan went."""

    root: Path
    extensions: tuple[str, ...]
    records: list[Any]
    skipped: list[tuple[Path, str]]
    class_names: list[str]
    table: Path | None = None
    report: ScanReport = field(default_factory=ScanReport)


def scan_folder(
    kind: str,
    what: str,
    root: str | Path,
    extensions: Iterable[str],
    probe: Callable[..., Any],
    labels: str | None = None,
    *,
    header: Callable[[Path], dict[str, Any]] | None = None,
    scan_cache: bool = True,
    workers: int | None = None,
) -> FolderScan:
    """Probe every file under ``root`` with one of ``extensions`` (any case, recursive, sorted), and caption it.

    Two ways to probe. With ``header``: ``header(path)`` reads the file (slow: it is run in parallel and its result,
    a JSON-able dict, kept in the scan cache when ``scan_cache``) or raises :class:`SkipFile` (also cached), and
    ``probe(path, info)`` turns that dict into the record (fast, run on every scan, so it may depend on the dataset's
    settings). Without ``header``: ``probe(path)`` does both, in parallel, and nothing is cached. A record is a
    dataclass with ``path``, ``label`` and ``caption`` fields; ``probe`` may raise :class:`SkipFile` too.

    ``kind`` ("AudioFolder") and ``what`` ("audio") name things in messages; each skipped file is logged as a warning
    on the ``mmdiff.data`` logger (unless its :class:`SkipFile` says ``warn=False``), in file order, on every scan.
    ``workers``: threads that read headers (``None``: one per CPU this process may use; 1: serial). Captions follow
    the rules in this module's docstring; the table is read (and its errors raised) before any file is probed.
    """
    began = time.perf_counter()
    root = Path(root).expanduser()  # "~/music" from Python; on a command line the shell (or $HOME) does it
    if not root.is_dir():
        raise ValueError(f"{kind}: root {root} is not a folder")
    table, rows = read_metadata(kind, root)  # {relative posix path: _Row}; errors before the (slow) probing
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    listing, texts = _list_files(root, extensions)  # [(relative posix path, size, mtime_ns)] sorted; {"a/b.txt"}
    files = [root / rel for rel, _, _ in listing]
    in_class = [not labels or "/" in rel for rel, _, _ in listing]  # labels="subfolder": a file needs a class folder
    store = _ScanStore(kind, root, extensions, header) if header and scan_cache else None
    entries = store.load() if store else {}  # {rel: [size, mtime_ns, info or None, skip or None]}
    fresh: dict[str, list] = {}  # the cache entries of the files seen now (what the cache file will hold)
    todo = []  # indices into files whose header (or whole probe) must be read now
    for i, (rel, size, mtime) in enumerate(listing):
        entry = entries.get(rel)
        if entry and entry[0] == size and entry[1] == mtime:
            fresh[rel] = entry  # kept for a file outside a class folder too: a scan without labels may use it
        elif in_class[i]:
            todo.append(i)
    results = _read_all(kind, header or probe, [files[i] for i in todo], workers)  # value or SkipFile, in order
    if header:
        for i, result in zip(todo, results):
            rel, size, mtime = listing[i]
            skip = [result.reason, result.warn, result.group] if isinstance(result, SkipFile) else None
            fresh[rel] = [size, mtime, None if skip else result, skip]
    done = dict(zip(todo, results))
    records, keys, skipped, groups = [], [], [], Counter()  # keys: each record's relative posix path
    for i, path in enumerate(files):
        try:
            if not in_class[i]:
                reason = f"labels='subfolder' needs each file inside a class sub-folder of {root}"
                raise SkipFile(reason, group="not in a class sub-folder")
            if header:
                _, _, info, skip = fresh[listing[i][0]]
                if skip:
                    raise SkipFile(*skip)
                records.append(probe(path, info))
            elif isinstance(done[i], SkipFile):
                raise done[i]
            else:
                records.append(done[i])
            keys.append(listing[i][0])
        except SkipFile as skip:
            skipped.append((path, skip.reason))
            groups[skip.group] += 1
            if skip.warn:
                log.warning("%s: skipping %s: %s", kind, path, skip.reason)
    if store and (todo or len(fresh) != len(entries) or store.rewrite):
        store.save(fresh)  # something was read, removed or the file was bad; unchanged folders write nothing
    if not records:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ValueError(
            f"{kind}: no usable {what} under {root}: {len(files)} file(s) seen with extensions "
            f"{', '.join(extensions)}, {len(skipped)} skipped{first}"
        )
    captions = _captions(kind, root, table, rows, [r.path for r in records], keys, texts)
    records = [r if r.caption == c else replace(r, caption=c) for r, c in zip(records, captions)]  # replace: slow
    classes = [key.split("/", 1)[0] for key in keys] if labels else []  # each record's first sub-folder
    class_names = sorted(set(classes))
    if labels:
        index = {name: i for i, name in enumerate(class_names)}
        records = [replace(r, label=index[c]) for r, c in zip(records, classes)]
    cached = sum(in_class) - len(todo)  # files whose header came from the cache
    seconds = time.perf_counter() - began
    report = ScanReport(
        len(todo),
        cached,
        seconds,
        tuple(sorted(groups.items(), key=lambda g: (-g[1], g[0]))),
        store.path if store else None,
    )
    return FolderScan(root, extensions, records, skipped, class_names, table, report)


def format_summary(paths: Iterable[Path]) -> str:
    """The formats for a dataset's one-line summary: ``"formats .wav (3), .mp3 (1)"`` (extensions in lower case,
    most common first, then by name)."""
    counts = sorted(Counter(path.suffix.lower() for path in paths).items(), key=lambda c: (-c[1], c[0]))
    return "formats " + ", ".join(f"{ext} ({n})" for ext, n in counts)


# ------------------------------------------------------------------------------------------ listing and probing


def _list_files(root: Path, extensions: tuple[str, ...]) -> tuple[list[tuple[str, int, int]], set[str]]:
    """``(relative posix path, size, mtime_ns)`` of every regular file under ``root`` whose suffix (in lower case)
    is in ``extensions``, except the caption tables at the root; and the relative paths of the ``*.txt`` files (the
    sidecar captions, so that 100,000 files need no 100,000 more ``stat`` calls to find them). One ``os.scandir``
    walk, one ``stat`` per media file.

    Same files and order as ``sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file())``
    (Path order compares path components; symlinked files count, symlinked folders are not entered, unreadable
    folders are passed over), at a fraction of the cost for 100,000 files."""
    found: list[tuple[tuple[str, ...], str, int, int]] = []
    texts: set[str] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(str(root), ())]
    while stack:
        folder, parts = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except PermissionError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, (*parts, entry.name)))
                    continue
                name = entry.name
                if name.endswith(".txt") and len(name) > 4 and entry.is_file():  # a sidecar caption, maybe
                    texts.add("/".join((*parts, name)))
                dot = name.rfind(".")
                if not (0 < dot < len(name) - 1 and name[dot:].lower() in extensions):  # pathlib's suffix rule
                    continue
                if not parts and name in METADATA_TABLES:
                    continue
                info = entry.stat()  # follows a symlink, as Path.is_file does
            except OSError:  # a broken symlink, a file removed while listing
                continue
            if stat.S_ISREG(info.st_mode):
                key = (*parts, name)
                found.append((key, "/".join(key), info.st_size, info.st_mtime_ns))
    found.sort(key=lambda f: f[0])
    return [(rel, size, mtime) for _, rel, size, mtime in found], texts


def _read_all(kind: str, read: Callable[[Path], Any], paths: list[Path], workers: int | None) -> list[Any]:
    """``read(path)`` for each path, in order: its value, or the :class:`SkipFile` it raised (other errors raise).

    A thread pool of ``workers`` (``None``: the CPUs this process may use) when there are at least
    :data:`PARALLEL_MIN_FILES` paths; a tqdm progress bar when more than :data:`PROGRESS_MIN_FILES` (shown only on a
    terminal: ``disable=None``; tqdm >= 4.66 also reads ``TQDM_DISABLE=1``)."""

    def one(path: Path) -> Any:
        try:
            return read(path)
        except SkipFile as skip:
            return skip

    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"{kind}: scan workers must be >= 1, got {workers}")
    if len(paths) > PROGRESS_MIN_FILES:
        log.info("%s: reading %d file headers with %d thread(s)", kind, len(paths), workers)
    bar = tqdm(
        total=len(paths), desc=f"{kind} scan", unit="file", disable=None if len(paths) > PROGRESS_MIN_FILES else True
    )
    try:
        if workers == 1 or len(paths) < PARALLEL_MIN_FILES:
            results = []
            for path in paths:
                results.append(one(path))
                bar.update()
            return results
        with ThreadPoolExecutor(max_workers=min(workers, len(paths)), thread_name_prefix="mmdiff-scan") as pool:
            results = []
            for result in pool.map(one, paths):  # in order; an error other than SkipFile raises here
                results.append(result)
                bar.update()
            return results
    finally:
        bar.close()


# ------------------------------------------------------------------------------------------------- scan cache


_unwritable: set[Path] = set()  # cache folders already warned about (warn once per process)


class _ScanStore:
    """The scan cache file of one folder: ``{"version", "kind", "root", "extensions", "header", "files": {rel:
    [size, mtime_ns, info or null, [reason, warn, group] or null]}}`` (JSON: nothing in it can run code)."""

    def __init__(self, kind: str, root: Path, extensions: tuple[str, ...], header: Callable[[Path], Any]):
        self.kind, self.root = kind, str(root.resolve())
        self.header = f"{getattr(header, '__module__', '')}.{getattr(header, '__qualname__', repr(header))}"
        self.extensions = list(extensions)
        name = cache_key(self.root, self.extensions, kind, self.header, SCAN_CACHE_VERSION)
        self.path = cache_root() / "scans" / f"{name}.json"
        self.rewrite = False  # the file on disk is bad: write it even when nothing changed

    def _head(self) -> dict[str, Any]:
        return {
            "version": SCAN_CACHE_VERSION,
            "kind": self.kind,
            "root": self.root,
            "extensions": self.extensions,
            "header": self.header,
        }

    def load(self) -> dict[str, list]:
        """The cached entries (``{}`` when there is no cache file, or it is unreadable: then with a warning)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as error:
            return self._bad(f"cannot be read ({error})")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            return self._bad(f"is not valid JSON ({error.msg} at line {error.lineno})")
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            return self._bad("does not hold a 'files' object")
        if any(data.get(k) != v for k, v in self._head().items()):
            return self._bad("was written for another folder, kind or cache version")
        files = data["files"]
        for rel, entry in files.items():
            if not _valid_entry(entry):
                return self._bad(f"has a malformed entry for {rel!r}")
        return files

    def _bad(self, why: str) -> dict[str, list]:
        log.warning(
            "%s: scan cache %s %s; ignoring it, scanning %s again and rewriting it",
            self.kind,
            self.path,
            why,
            self.root,
        )
        self.rewrite = True
        return {}

    def save(self, files: dict[str, list]) -> None:
        """Write ``files`` atomically (temporary file + ``os.replace``); a folder that cannot be written is warned
        about once per process and otherwise ignored: the scan is then simply not cached."""
        folder = self.path.parent
        text = json.dumps({**self._head(), "files": files}, separators=(",", ":"))
        temp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.stem}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(temp, self.path)
        except OSError as error:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)
            if folder not in _unwritable:
                _unwritable.add(folder)
                log.warning(
                    "%s: cannot write the scan cache in %s (%s); scanning without it (set MMDIFF_CACHE to a writable "
                    "folder, or scan_cache=False)",
                    self.kind,
                    folder,
                    error,
                )


def _valid_entry(entry: Any) -> bool:
    """``[size, mtime_ns, info dict, None]`` or ``[size, mtime_ns, None, [reason, warn, group]]``."""
    if not (isinstance(entry, list) and len(entry) == 4):
        return False
    size, mtime, info, skip = entry
    if not (type(size) is int and type(mtime) is int):
        return False
    if skip is None:
        return isinstance(info, dict)
    return (
        info is None
        and isinstance(skip, list)
        and len(skip) == 3
        and isinstance(skip[0], str)
        and isinstance(skip[1], bool)
        and isinstance(skip[2], str)
    )


def caption_summary(captions: Sequence[str]) -> str:
    """The caption count for a dataset's one-line summary: ``"3 captioned, 1 without caption (trained with the
    empty caption)"``, or ``"no captions"`` when no file has one."""
    captioned = sum(1 for c in captions if c)
    if not captioned:
        return "no captions"
    return f"{captioned} captioned, {len(captions) - captioned} without caption (trained with the empty caption)"


# ------------------------------------------------------------------------------------------------ caption tables


@dataclass(frozen=True)
class _Row:
    """One table row that names a file: its line in the table (1-based) and its caption (``""``: none)."""

    line: int
    caption: str


class _Warnings:
    """One kind of repeated warning: the first :data:`MAX_WARNINGS` are logged, the rest counted by :meth:`close`."""

    def __init__(self, kind: str, what: str):
        self.kind, self.what, self.count = kind, what, 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS:
            log.warning("%s: %s", self.kind, message)

    def close(self) -> None:
        if self.count > MAX_WARNINGS:
            log.warning(
                "%s: %d more %s not shown (%d in all)", self.kind, self.count - MAX_WARNINGS, self.what, self.count
            )


def read_metadata(kind: str, root: Path) -> tuple[Path | None, dict[str, _Row]]:
    """The caption table at ``root`` -> ``(table path or None, {file_name normalised: row})``.

    Raises ``ValueError`` naming the table (and line, and columns) for both tables present, missing columns, a bad
    row; warns (naming table, both lines, which wins) for a file named twice with different captions.
    """
    present = [root / name for name in METADATA_TABLES if (root / name).is_file()]
    if len(present) > 1:
        raise ValueError(
            f"{kind}: both {present[0]} and {present[1]} hold captions for {root}; keep one of them (one table per "
            "folder, as in Hugging Face datasets)"
        )
    if not present:
        return None, {}
    table = present[0]
    try:
        with open(table, encoding="utf-8-sig", newline="") as f:  # utf-8-sig: a spreadsheet's byte-order mark is fine
            text = f.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{kind}: {table} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    lines = _csv_rows(kind, table, text) if table.suffix == ".csv" else _jsonl_rows(kind, table, text)
    rows: dict[str, _Row] = {}
    columns_seen: set[str] = set()
    twice = _Warnings(kind, "files named twice with different captions")
    both = _Warnings(kind, "rows whose 'caption' and 'text' differ")
    for line, row in lines:
        columns_seen.update(row)
        if "file_name" not in row:
            expected = "a 'file_name' column (the file's path relative to the folder) and a 'caption' or 'text' column"
            raise ValueError(
                f"{kind}: {table} line {line}: no 'file_name'; it has {_columns(row)}; expected {expected}"
            )
        name = row["file_name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{kind}: {table} line {line}: column 'file_name' must be a non-empty path, got {name!r}")
        caption = _row_caption(kind, table, line, name, row, both)
        key = posixpath.normpath(name.strip().replace("\\", "/"))
        if key in rows and rows[key].caption != caption:
            twice(
                f"{table} lines {rows[key].line} and {line} both name {name.strip()} with different captions; "
                f"using line {line} (the later row wins)"
            )
        rows[key] = _Row(line, caption)
    twice.close()
    both.close()
    if not any(c in columns_seen for c in CAPTION_COLUMNS):
        raise ValueError(
            f"{kind}: {table} has no caption column: it has {_columns(columns_seen)}; expected 'file_name' and "
            "'caption' or 'text'"
        )
    return table, rows


def _columns(columns: Iterable[str]) -> str:
    names = sorted(columns)
    return "columns " + ", ".join(repr(c) for c in names) if names else "no columns"


def _row_caption(kind: str, table: Path, line: int, name: str, row: dict[str, Any], warn: _Warnings) -> str:
    """The caption of one row: ``caption`` or ``text`` (stripped; empty or absent -> ``""``), ``caption`` winning."""
    values = {}
    for column in CAPTION_COLUMNS:
        value = row.get(column)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{kind}: {table} line {line}: column {column!r} must be text, got {value!r}")
        if value and value.strip():
            values[column] = value.strip()
    if len(set(values.values())) > 1:
        warn(f"{table} line {line} ({name.strip()}): columns 'caption' and 'text' differ; using 'caption'")
    return next(iter(values.values()), "")  # CAPTION_COLUMNS order: "caption" first


def _csv_rows(kind: str, table: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: cell})`` per non-blank data row of a CSV table with a header row."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # quoted cells may span lines
    try:
        header = next(reader, None)
        if not header:
            raise ValueError(
                f"{kind}: {table} is empty; expected a header row with 'file_name' and 'caption' or 'text'"
            )
        header = [h.strip() for h in header]
        if "file_name" not in header or not any(c in header for c in CAPTION_COLUMNS):
            raise ValueError(f"{kind}: {table} has {_columns(header)}; expected 'file_name' and 'caption' or 'text'")
        for cells in reader:
            if not cells or cells == [""]:
                continue  # a blank line
            if len(cells) != len(header):
                raise ValueError(
                    f"{kind}: {table} line {reader.line_num}: {len(cells)} fields, the header has {len(header)}"
                )
            yield reader.line_num, dict(zip(header, cells))
    except csv.Error as error:
        raise ValueError(f"{kind}: {table} line {reader.line_num}: not valid CSV ({error})") from error


def _jsonl_rows(kind: str, table: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, object)`` per non-blank line of a JSON Lines table."""
    for line, source in enumerate(text.splitlines(), start=1):
        if not source.strip():
            continue
        try:
            row = json.loads(source)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{kind}: {table} line {line}: not valid JSON ({error.msg}, column {error.colno})"
            ) from None
        if not isinstance(row, dict):
            raise ValueError(f"{kind}: {table} line {line}: expected a JSON object, got {type(row).__name__}")
        yield line, row


def _captions(
    kind: str,
    root: Path,
    table: Path | None,
    rows: dict[str, _Row],
    paths: list[Path],
    keys: list[str],
    texts: set[str],
) -> list[str]:
    """One caption per used file (``""``: none): the table's row, else the sidecar ``.txt``; warnings for table rows
    naming missing files and for table captions that disagree with a sidecar. ``keys``: the files' relative posix
    paths; ``texts``: the relative paths of the ``.txt`` files under ``root`` (from the listing)."""
    missing = _Warnings(kind, "table rows naming missing files")
    disagree = _Warnings(kind, "table captions that differ from a sidecar .txt")
    used = set(keys)
    for key, row in rows.items():
        if key == ".." or key.startswith("../") or posixpath.isabs(key):
            missing(f"{table} line {row.line} names {key}, which is not relative to {root}; row ignored")
        elif key not in used and not (root / key).exists():
            missing(f"{table} line {row.line} names {key}, which does not exist under {root}; row ignored")
    missing.close()
    captions = []
    for path, key in zip(paths, keys):
        row = rows.get(key)
        sidecar = _sidecar(kind, path) if key[: key.rfind(".")] + ".txt" in texts else ""
        if row and row.caption and sidecar and sidecar != row.caption:
            disagree(
                f"{path}: caption in {table} line {row.line} differs from {path.with_suffix('.txt')}; using the table's"
            )
        captions.append(row.caption if row and row.caption else sidecar)
    disagree.close()
    return captions


def _sidecar(kind: str, path: Path) -> str:
    """The caption in ``<stem>.txt`` beside ``path`` (stripped), ``""`` when there is none or it cannot be read."""
    sidecar = path.with_suffix(".txt")
    if not sidecar.is_file():
        return ""
    try:
        return sidecar.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as error:
        log.warning("%s: %s: caption not read (%s); %s trains with the empty caption", kind, sidecar, error, path.name)
        return ""
