"""The dataset contract every data source meets: items keyed by ``(index, seed)``.

The trainer asks for item ``(index, item_seed)``; the dataset derives every random choice of that item (a crop's
start, an augmentation) from ``item_seed`` alone, so a resumed or multi-process run sees exactly the items an
uninterrupted single-process run would (see :mod:`mmdiff.train.stream`). Items are dicts of tensors and plain values
that the adapter's ``encode`` and the conditioner read (``"audio"``, ``"video"``, ``"label"`` ...).

A dataset that knows its classes says so with ``num_classes`` (0: unlabelled) and optionally ``class_names``; the
class count of a run is taken from there (``num_classes: auto``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class SeededDataset(Protocol):
    """``len(dataset)`` items; ``dataset[(index, item_seed)] -> dict`` (an int index alone uses a fixed seed).

    Optional: ``item_key(index, item_seed) -> str | None``, a string that names exactly the media of item
    ``(index, item_seed)``: equal keys promise equal media (the same file, unchanged, the same crop, the same decoding
    settings), so that what is computed from the media alone is cached by it (the latent cache,
    :mod:`mmdiff.latent.cache`); ``None``: this item is not cacheable. The trainer calls it right after
    ``dataset[(index, item_seed)]``, in the same process. The synths and folders (and their prepared stores) have one
    (:mod:`mmdiff.modalities.item_keys`); streamed shards do not (not cacheable).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]: ...


@runtime_checkable
class StreamingDataset(Protocol):
    """A dataset read as a stream rather than by index (WebDataset-style shards: :mod:`mmdiff.modalities.shards`).

    ``len(dataset)`` items make one epoch. ``stream(positions, epoch_seed=, item_seed=)`` yields the items at
    increasing global stream positions: which item sits at position ``p`` follows the dataset's own order for epoch
    ``p // len(dataset)``, seeded by ``epoch_seed(epoch)``, and item ``p`` draws its randomness (crops) from
    ``item_seed(p)`` alone. Positions not asked for need not be read. The trainer recognises such a dataset with
    ``isinstance(dataset, StreamingDataset)`` and reads it through :func:`mmdiff.train.stream.streaming_batches`,
    which supplies the seeds and the positions of each process and loader worker; resume is exact because a batch is
    a function of its positions.
    """

    def __len__(self) -> int: ...

    def stream(
        self, positions: Iterable[int], epoch_seed: Callable[[int], int], item_seed: Callable[[int], int]
    ) -> Iterator[dict[str, Any]]: ...


def dataset_classes(dataset: Any) -> tuple[int | None, list[str]]:
    """``(num_classes, class_names)`` that ``dataset`` declares (0: unlabelled); ``(None, [])`` when it declares
    nothing about classes."""
    count = getattr(dataset, "num_classes", None)
    if count is None:
        return None, []
    names = [str(n) for n in (getattr(dataset, "class_names", None) or [])]
    return int(count), names if len(names) == int(count) else []


def first_items(dataset: Any, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The first ``min(n, len(dataset))`` items of ``dataset`` with fixed seeds, item ``i`` drawn with seed
    ``seed + i`` (its crop, its caption's phrasing): one fixed sample of the data, the same in every run and process
    (an autoencoder's demo reconstructions, latent statistics). A streaming dataset gives the first positions of its
    stream for epoch seed ``seed``, each with seed ``seed + position``."""
    n = min(int(n), len(dataset))
    if isinstance(dataset, StreamingDataset):
        return list(dataset.stream(range(n), epoch_seed=lambda epoch: seed, item_seed=lambda p: seed + p))
    return [dataset[(i, seed + i)] for i in range(n)]
