"""Deterministic, resumable data order: every sample's identity and randomness derive from its position.

Position ``p`` in the infinite stream of training samples is item ``perm_e[p mod N]`` of epoch ``e = p // N`` (a
seeded permutation per epoch) and carries the item seed ``hash(seed, p)``. The item seed drives the dataset's own
randomness (random crops) and the sample's diffusion noise. So a run resumed at step ``k`` sees exactly the samples
and noise an uninterrupted run would, and a global batch split over several processes trains exactly as in one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler, default_collate, get_worker_info

from ..data import StreamingDataset

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant (splitmix64)
_MASK = (1 << 63) - 1


def item_seed(seed: int, position: int, salt: int = 0) -> int:
    """A well-mixed 63-bit seed for stream position ``position`` (splitmix64 finaliser)."""
    z = (seed * _MIX + position * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK


class StreamBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this process's share of each global micro-batch as ``[(index, item_seed), ...]``.

    Micro-batch ``m`` covers stream positions ``[m * B * W, (m + 1) * B * W)`` for per-process batch ``B`` and ``W``
    processes; process ``rank`` takes the contiguous slice ``[rank * B, (rank + 1) * B)`` of it.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_micro_batch: int = 0,
    ):
        if dataset_size < 1:
            raise ValueError("the dataset is empty")
        self.n, self.batch_size, self.seed = dataset_size, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start_micro_batch
        self._perm_epoch, self._perm = -1, None

    def _index(self, position: int) -> int:
        epoch = position // self.n
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(item_seed(self.seed, epoch, salt=1))
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
        return int(self._perm[position % self.n])

    def micro_batch(self, m: int) -> list[tuple[int, int]]:
        first = (m * self.world_size + self.rank) * self.batch_size
        return [(self._index(p), item_seed(self.seed, p)) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        m = self.start
        while True:
            yield self.micro_batch(m)
            m += 1


def noise_generators(keys_seeds: list[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample for its diffusion noise, from the item seeds (salted apart from the data's use)."""
    return [torch.Generator(device).manual_seed(item_seed(s, 0, salt=2)) for s in keys_seeds]


class _StreamBatches(IterableDataset):
    """This process's micro-batches of a :class:`~mmdiff.data.StreamingDataset`, collated, split over loader workers.

    Micro-batch ``m`` is stream positions ``[(m * W + rank) * B, (m * W + rank + 1) * B)``, the slice
    :class:`StreamBatchSampler` gives. Loader worker ``w`` of ``K`` builds micro-batches ``start + w, start + w + K,
    ...``; torch's DataLoader asks its workers for batches in turn (worker ``i % K`` for the ``i``-th, returned in that
    order: "Multi-process data loading" in torch.utils.data), so the batches arrive as ``start, start + 1, ...`` for any
    ``K``, and with ``K = 0`` the main process builds them all.
    """

    def __init__(self, dataset: StreamingDataset, batch_size: int, seed: int, rank: int, world_size: int, start: int):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start

    def _positions(self, worker: int, workers: int) -> Iterator[int]:
        m = self.start + worker
        while True:
            first = (m * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)
            m += workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        positions = self._positions(worker, workers)
        seeds = self._positions(worker, workers)  # the same positions, for the "_seed" of each item
        items = self.dataset.stream(
            positions,
            epoch_seed=lambda e: item_seed(self.seed, e, salt=1),  # StreamBatchSampler's epoch permutation salt
            item_seed=lambda p: item_seed(self.seed, p),
        )
        while True:
            batch = [{**next(items), "_seed": item_seed(self.seed, next(seeds))} for _ in range(self.batch_size)]
            yield default_collate(batch)


def streaming_batches(
    dataset: StreamingDataset,
    *,
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int,
    start_micro_batch: int,
    num_workers: int,
    pin_memory: bool,
    worker_init_fn: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Endless collated micro-batches of a streaming dataset (e.g. shards), with ``"_seed"``, as the trainer's loader
    over a :class:`StreamBatchSampler` gives them for a map-style dataset.

    The same positions, item seeds and process split as :class:`StreamBatchSampler`: micro-batch ``m`` holds stream
    positions ``[m * B * W, (m + 1) * B * W)`` and process ``rank`` takes ``[rank * B, (rank + 1) * B)`` of it; item
    ``p`` is seeded ``item_seed(seed, p)`` (crops and diffusion noise); which item sits at ``p`` is the dataset's
    seeded order (for shards: a shard permutation per epoch, then the items within a shard). The batches do not
    depend on ``num_workers``.

    Exact resume: ``start_micro_batch = step * grad_accum`` gives exactly the batches an uninterrupted run gives from
    that micro-batch on, because a batch is a function of its stream positions only; "where a run is" is its position
    in the stream, not a file handle. The cost of resuming is that of the dataset's ``stream`` reaching the first
    position: for shards nothing, as each item is one ranged read located by the index (a reader of plain sequential
    tar streams would have to read the skipped part of one shard).
    """
    batches = _StreamBatches(dataset, batch_size, seed, rank, world_size, start_micro_batch)
    loader = DataLoader(
        batches,
        batch_size=None,  # the dataset yields whole micro-batches
        num_workers=num_workers,
        worker_init_fn=worker_init_fn if num_workers else None,
        pin_memory=pin_memory,
    )
    return iter(loader)
