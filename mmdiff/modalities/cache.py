"""Where mmdiff keeps what it computes once and reuses between runs (folder scans, prepared data).

``$MMDIFF_CACHE`` when set, else ``$XDG_CACHE_HOME/mmdiff``, else ``~/.cache/mmdiff`` (the XDG base directory
convention that pip, Hugging Face and torch follow). Nothing in it is needed to reproduce a run: every entry is
rebuilt from the data when missing, stale or unreadable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["cache_key", "cache_root"]


def cache_root() -> Path:
    """The cache folder (not created here): ``$MMDIFF_CACHE``, ``$XDG_CACHE_HOME/mmdiff`` or ``~/.cache/mmdiff``."""
    if os.environ.get("MMDIFF_CACHE"):
        return Path(os.environ["MMDIFF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mmdiff"


def cache_key(*parts: Any) -> str:
    """A short stable name for a cache entry from JSON-able ``parts`` (a folder's absolute path, settings ...):
    the first 16 hex digits of their SHA-256."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
