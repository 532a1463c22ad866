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
"""

from __future__ import annotations

import csv
import io
import json
import logging
import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("mmdiff.data")

METADATA_TABLES = ("metadata.csv", "metadata.jsonl")  # at the folder root; never taken as media
CAPTION_COLUMNS = ("caption", "text")  # in order of precedence when a row has both
MAX_WARNINGS = 20  # per kind of repeated warning, then one line that counts the rest


class SkipFile(Exception):
    """Raised by a probe to leave a file out: ``reason`` is reported; ``warn=False`` for an expected, quiet skip."""

    def __init__(self, reason: str, warn: bool = True):
        super().__init__(reason)
        self.reason, self.warn = reason, warn


@dataclass(frozen=True)
class FolderScan:
    """What :func:`scan_folder` found: the probed records (with ``label`` and ``caption`` set), the skipped files,
    the classes, and the caption table used (``None`` when the root has none)."""

    root: Path
    extensions: tuple[str, ...]
    records: list[Any]
    skipped: list[tuple[Path, str]]
    class_names: list[str]
    table: Path | None = None


def scan_folder(
    kind: str,
    what: str,
    root: str | Path,
    extensions: Iterable[str],
    probe: Callable[[Path], Any],
    labels: str | None = None,
) -> FolderScan:
    """Probe every file under ``root`` with one of ``extensions`` (any case, recursive, sorted), and caption it.

    ``probe(path)`` returns a dataclass record with ``path``, ``label`` and ``caption`` fields, or raises
    :class:`SkipFile`. ``kind`` ("AudioFolder") and ``what`` ("audio") name things in messages; each skipped file is
    logged as a warning on the ``mmdiff.data`` logger (unless its :class:`SkipFile` says ``warn=False``). Captions
    follow the rules in this module's docstring; the table is read (and its errors raised) before any file is probed.
    """
    root = Path(root).expanduser()  # "~/music" from Python; on a command line the shell (or $HOME) does it
    if not root.is_dir():
        raise ValueError(f"{kind}: root {root} is not a folder")
    table, rows = read_metadata(kind, root)  # {relative posix path: _Row}; errors before the (slow) probing
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    tables = {root / name for name in METADATA_TABLES}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file() and p not in tables)
    records, skipped = [], []
    for path in files:
        try:
            if labels and len(path.relative_to(root).parts) < 2:
                raise SkipFile(f"labels='subfolder' needs each file inside a class sub-folder of {root}")
            records.append(probe(path))
        except SkipFile as skip:
            skipped.append((path, skip.reason))
            if skip.warn:
                log.warning("%s: skipping %s: %s", kind, path, skip.reason)
    if not records:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ValueError(
            f"{kind}: no usable {what} under {root}: {len(files)} file(s) seen with extensions "
            f"{', '.join(extensions)}, {len(skipped)} skipped{first}"
        )
    captions = _captions(kind, root, table, rows, [r.path for r in records])
    records = [replace(r, caption=c) for r, c in zip(records, captions)]
    class_names = sorted({r.path.relative_to(root).parts[0] for r in records}) if labels else []
    if labels:
        index = {name: i for i, name in enumerate(class_names)}
        records = [replace(r, label=index[r.path.relative_to(root).parts[0]]) for r in records]
    return FolderScan(root, extensions, records, skipped, class_names, table)


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


def _captions(kind: str, root: Path, table: Path | None, rows: dict[str, _Row], paths: list[Path]) -> list[str]:
    """One caption per used file (``""``: none): the table's row, else the sidecar ``.txt``; warnings for table rows
    naming missing files and for table captions that disagree with a sidecar."""
    missing = _Warnings(kind, "table rows naming missing files")
    disagree = _Warnings(kind, "table captions that differ from a sidecar .txt")
    keys = {path.relative_to(root).as_posix() for path in paths}
    for key, row in rows.items():
        if key == ".." or key.startswith("../") or posixpath.isabs(key):
            missing(f"{table} line {row.line} names {key}, which is not relative to {root}; row ignored")
        elif key not in keys and not (root / key).exists():
            missing(f"{table} line {row.line} names {key}, which does not exist under {root}; row ignored")
    missing.close()
    captions = []
    for path in paths:
        row = rows.get(path.relative_to(root).as_posix())
        sidecar = _sidecar(kind, path)
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
