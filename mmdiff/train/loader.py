"""How many DataLoader worker processes a run uses, when ``trainer.num_workers=auto`` (the default).

Workers pay off when producing an item costs time the training step could overlap with: decoding files, and also
the built-in synthesizers when a GPU consumes batches faster than one CPU thread makes them (measured on an H200:
the music synth makes 359 items/s in-process and 3,072 with 8 workers, while ``audio_music`` trains at 221 samples/s
in-process; ``benchmarks/results/gpu.md``). On a CPU-only machine the workers would take cores from the step itself,
so ``auto`` uses them there only for data read from files, and only where cores are left over.

A dataset says how it makes items with the attribute ``reads_files`` (``True`` for folder datasets and shards,
``False`` for built-in generators and the memory-mapped prepared store); a dataset without the attribute is
treated as reading files.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["MAX_AUTO_WORKERS", "auto_workers", "resolve_workers"]

MAX_AUTO_WORKERS = 8  # past this, more processes mostly add memory and start-up time


def _cores() -> int:
    """CPU cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_workers(dataset: Any, device_type: str, processes: int = 1, cores: int | None = None) -> int:
    """Workers per training process for ``num_workers=auto``.

    On a GPU: every core a process has beyond its own main thread, at most :data:`MAX_AUTO_WORKERS`. On a CPU: none
    for data made in memory (``reads_files=False``); for files, half the cores a process has beyond two (the step
    uses the rest), at most 4; so a 2-core machine trains in one process.
    """
    share = max((cores or _cores()) // max(processes, 1), 1)  # cores per training process
    if device_type == "cuda":
        return min(MAX_AUTO_WORKERS, share - 1)
    if not getattr(dataset, "reads_files", True):
        return 0
    return min(4, max(share - 2, 0) // 2)


def resolve_workers(num_workers: int | str, dataset: Any, device_type: str, processes: int = 1) -> int:
    """``trainer.num_workers`` -> a worker count: an integer >= 0 as given, ``"auto"`` by :func:`auto_workers`."""
    if num_workers == "auto":
        return auto_workers(dataset, device_type, processes)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"trainer.num_workers: expected auto or an integer >= 0, got {num_workers!r}")
    return num_workers
