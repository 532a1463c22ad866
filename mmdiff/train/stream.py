"""Deterministic, resumable data order: every sample's identity and randomness derive from its position.

Position ``p`` in the infinite stream of training samples is item ``perm_e[p mod N]`` of epoch ``e = p // N`` (a
seeded permutation per epoch) and carries the item seed ``hash(seed, p)``. The item seed drives the dataset's own
randomness (random crops) and the sample's diffusion noise. So a run resumed at step ``k`` sees exactly the samples
and noise an uninterrupted run would, and a global batch split over several processes trains exactly as in one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

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
