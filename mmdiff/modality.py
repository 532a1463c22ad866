"""The modality adapter interface: everything modality-specific, behind one small protocol.

Data flows one way: dataset items -> :meth:`ModalityAdapter.encode` -> tensor ``x0`` the core sees -> diffusion ->
tensor -> :meth:`ModalityAdapter.decode` -> media -> :meth:`ModalityAdapter.write` / :meth:`ModalityAdapter.preview`.

An adapter is chosen in the config with Hydra's ``_target_``; a new modality is a new module plus config files
(``conf/adapter/``, ``conf/net/``, ``conf/data/``) and a recipe, with no edit to the core or the other adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class ModalityAdapter(Protocol):
    """What the trainer and the generation pipeline need from a modality."""

    def encode(self, batch: dict[str, Any], generator: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        """A collated dataset batch (already on the training device) -> ``(x0 (B, ...), conditions)``.

        ``generator`` (per-sample generators from the trainer) drives any training-time randomness of the encoding
        (e.g. which video frames are given as known), so that resumed and multi-process runs stay exact.
        """
        ...

    def decode(self, x: Tensor) -> list[Any]:
        """Generated tensors ``(B, ...)`` -> one media item per sample (a waveform, a clip, an array)."""
        ...

    def sample_shape(self, length: float | None = None) -> tuple[int, ...]:
        """Per-sample tensor shape (no batch dim) for a requested length (seconds, frames; ``None``: the default)."""
        ...

    def conditions(self, n: int, device: Any = "cpu", **request: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(cond, null_cond)`` for ``n`` samples from user requests such as ``label=3``; empty if unconditional."""
        ...

    def write(self, items: list[Any], directory: Path, prefix: str = "sample") -> list[Path]:
        """Write media files for ``items`` into ``directory``; return their paths."""
        ...

    def preview(self, items: list[Any], path: Path) -> Path:
        """Write one PNG that shows ``items`` (spectrograms, frame grids, scatter plots)."""
        ...


@runtime_checkable
class EditableAdapter(ModalityAdapter, Protocol):
    """Adapters whose media have a length can also take inputs for editing (SDEdit, continuation, inpainting)."""

    def load_init(self, source: Any, length: float | None = None) -> Tensor:
        """A media file or a decoded item -> the per-sample tensor, padded or cropped to ``length``."""
        ...

    def range_mask(self, shape: tuple[int, ...], start: float, end: float) -> Tensor:
        """A mask broadcastable to ``shape`` that is 1 on ``[start, end)`` (seconds, frames: the adapter's unit)."""
        ...
