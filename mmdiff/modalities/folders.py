"""Scanning a folder of media files, shared by every folder dataset (audio, video, ...).

One pass over the files' headers at construction: each file is probed; a file the probe rejects is left out with a
warning that names it and the reason (one bad file in a large folder does not stop a run); a folder with nothing
usable is an error that says what was searched and why files were left out. Warnings go through the
``mmdiff.data`` logger, one line per file, so that a training run's log (``train.log``) keeps them. With ``labels="subfolder"`` a file's
class is its first sub-folder under the root (sorted names numbered from 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("mmdiff.data")


class SkipFile(Exception):
    """Raised by a probe to leave a file out: ``reason`` is reported; ``warn=False`` for an expected, quiet skip."""

    def __init__(self, reason: str, warn: bool = True):
        super().__init__(reason)
        self.reason, self.warn = reason, warn


@dataclass(frozen=True)
class FolderScan:
    """What :func:`scan_folder` found: the probed records (with ``label`` set), the skipped files, the classes."""

    root: Path
    extensions: tuple[str, ...]
    records: list[Any]
    skipped: list[tuple[Path, str]]
    class_names: list[str]


def scan_folder(
    kind: str,
    what: str,
    root: str | Path,
    extensions: Iterable[str],
    probe: Callable[[Path], Any],
    labels: str | None = None,
) -> FolderScan:
    """Probe every file under ``root`` with one of ``extensions`` (any case, recursive, sorted).

    ``probe(path)`` returns a dataclass record with ``path`` and ``label`` fields, or raises :class:`SkipFile`.
    ``kind`` ("AudioFolder") and ``what`` ("audio") name things in messages; each skipped file is logged as a warning
    on the ``mmdiff.data`` logger (unless its :class:`SkipFile` says ``warn=False``).
    """
    root = Path(root).expanduser()  # "~/music" from Python; on a command line the shell (or $HOME) does it
    if not root.is_dir():
        raise ValueError(f"{kind}: root {root} is not a folder")
    extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file())
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
    class_names = sorted({r.path.relative_to(root).parts[0] for r in records}) if labels else []
    if labels:
        index = {name: i for i, name in enumerate(class_names)}
        records = [replace(r, label=index[r.path.relative_to(root).parts[0]]) for r in records]
    return FolderScan(root, extensions, records, skipped, class_names)
